"""Environment configuration, parsed and validated once at cold start.

Every reader names the variable it failed on, so a misconfigured function fails its
init with a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class ConfigError(ValueError):
    """A required environment variable is missing or has an invalid value."""


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"environment variable {name} is required but not set")
    return default


def env_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        value = default
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(
                f"environment variable {name} must be an integer, got {raw!r}"
            ) from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"environment variable {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"environment variable {name} must be <= {maximum}, got {value}")
    return value


def env_float(
    env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float
) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(
            f"environment variable {name} must be between {minimum} and {maximum}, got {value}"
        )
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: Iterable[str]) -> str:
    allowed = tuple(choices)
    value = env_str(env, name, default)
    if value not in allowed:
        raise ConfigError(
            f"environment variable {name} must be one of {', '.join(allowed)}, got {value!r}"
        )
    return value


def env_int_list(
    env: Mapping[str, str], name: str, default: str, *, minimum: int, maximum: int
) -> tuple[int, ...]:
    raw = env_str(env, name, default)
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"environment variable {name} must be a comma-separated list of integers, got {raw!r}"
        ) from None
    if not values:
        raise ConfigError(f"environment variable {name} must list at least one value")
    for value in values:
        if not minimum <= value <= maximum:
            raise ConfigError(
                f"environment variable {name} values must be between {minimum} and {maximum},"
                f" got {value}"
            )
    return tuple(sorted(set(values)))
