"""Every function's environment: each variable's name, default and bound, in one place.

One frozen class per function (transform, archive, tag, bundle, api). A field that comes
from the environment is declared with one of the readers below, which record the
variable's name beside the field, so :meth:`Settings.from_env` reads every field the same
way and :meth:`Settings.variables` lists the names a function reads without running it.
``tests/unit/test_settings_contract.py`` holds those names to the ones Terraform sets
(``modules/pipeline/main.tf``, ``local.function_variables``), to ``tests/conftest.py`` and
to docs/contracts.md, so a variable renamed on one side only fails a test, not a deploy.

Parsing and its error messages live in :mod:`sluice.config`; a bad value fails the
function's init with the variable's name. Modules that only some functions need
(datasets, Pillow's formats) are imported by their reader, so a handler's cold start
imports nothing it does not use (tests/unit/test_cold_start_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self

from sluice import image_defaults
from sluice.config import env_choice, env_float, env_int, env_int_list, env_str
from sluice.leases import DEFAULT_LEASE_SECONDS
from sluice.s3copy import (
    DEFAULT_COPY_CONCURRENCY,
    DEFAULT_COPY_PART_SIZE,
    MAX_SINGLE_COPY_BYTES,
)
from sluice.s3io import MIN_PART_SIZE
from sluice.units import GIB, MIB

if TYPE_CHECKING:
    from sluice.datasets import Registry

_VARIABLE = "sluice.variable"

SHARED_VARIABLES = frozenset(
    {
        "SLUICE_ENV",
        "RAW_BUCKET",
        "PROCESSED_BUCKET",
        "ARCHIVE_BUCKET",
        "WORK_BUCKET",
        "IMAGES_TABLE",
        "LABELS_TABLE",
        "POWERTOOLS_LOG_LEVEL",
    }
)
"""Set on every function (``local.common_environment``): the environment's name and its
resource names, so any function's configuration shows which environment it belongs to.
``SLUICE_ENV`` is read by the local runner (``sluice.local.lambdas.wiring``), the log level by
Powertools; each resource name is read by the functions whose settings name it."""

RUNTIME_VARIABLES = frozenset({"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"})
"""Read by the runtime (``sluice.runtime``, ``sluice.metrics``), not by a settings class."""

LAMBDA_VARIABLES = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})
"""Set by Lambda itself; Terraform cannot and need not set them."""


@dataclass(frozen=True)
class Variable:
    """One environment variable and how a field is read from it."""

    name: str
    read: Callable[[Mapping[str, str]], Any]
    also_reads: tuple[str, ...] = ()
    """Further names the reader falls back on (set by Lambda, not by Terraform)."""


def _field(variable: Variable, default: Any = MISSING, factory: Any = MISSING) -> Any:
    return field(default=default, default_factory=factory, metadata={_VARIABLE: variable})


def required(name: str, *, default: Any = MISSING) -> Any:
    """A variable the function cannot start without. ``default`` only serves code that
    builds a settings object by hand (tests); ``from_env`` still requires the variable."""
    return _field(Variable(name, lambda env: env_str(env, name)), default)


def text(name: str, default: str) -> Any:
    return _field(Variable(name, lambda env: env_str(env, name, default)), default)


def integer(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> Any:
    def read(env: Mapping[str, str]) -> int:
        return env_int(env, name, default, minimum=minimum, maximum=maximum)

    return _field(Variable(name, read), default)


def optional_integer(name: str) -> Any:
    """Unset or 0 reads as None (no limit of its own)."""
    return _field(Variable(name, lambda env: env_int(env, name, 0, minimum=0) or None), None)


def number(name: str, default: float, *, minimum: float, maximum: float) -> Any:
    def read(env: Mapping[str, str]) -> float:
        return env_float(env, name, default, minimum=minimum, maximum=maximum)

    return _field(Variable(name, read), default)


def choice(name: str, default: str, choices: Callable[[], tuple[str, ...]]) -> Any:
    """``choices`` is called when the variable is read (it may live in a heavy module)."""
    return _field(Variable(name, lambda env: env_choice(env, name, default, choices())), default)


def integers(name: str, default: tuple[int, ...], *, minimum: int, maximum: int) -> Any:
    """A comma-separated list, read sorted and without repeats."""

    def read(env: Mapping[str, str]) -> tuple[int, ...]:
        fallback = ",".join(str(value) for value in default)
        return env_int_list(env, name, fallback, minimum=minimum, maximum=maximum)

    return _field(Variable(name, read), default)


def _read_datasets(env: Mapping[str, str]) -> Registry:
    from sluice.datasets import env_datasets

    return env_datasets(env, "DATASETS")


def _default_datasets() -> Registry:
    from sluice.datasets import load_registry

    return load_registry()


def dataset_registry() -> Any:
    """``DATASETS``: the environment's datasets as JSON; unset, the packaged default."""
    return _field(Variable("DATASETS", _read_datasets), factory=_default_datasets)


def _read_region(env: Mapping[str, str]) -> str:
    return env_str(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION") or "us-east-1")


def region() -> Any:
    """The function's region, as Lambda sets it."""
    return _field(Variable("AWS_REGION", _read_region, also_reads=("AWS_DEFAULT_REGION",)))


def _thumbnail_formats() -> tuple[str, ...]:
    from sluice.thumbnails import OUTPUT_FORMATS

    return tuple(OUTPUT_FORMATS)


class Settings:
    """What every settings class shares: reading itself from the environment."""

    FUNCTION: ClassVar[str]

    @classmethod
    def _variable_fields(cls) -> list[tuple[Field[Any], Variable]]:
        return [(f, f.metadata[_VARIABLE]) for f in fields(cls) if _VARIABLE in f.metadata]  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(**{f.name: variable.read(env) for f, variable in cls._variable_fields()})

    @classmethod
    def variables(cls) -> frozenset[str]:
        """Every environment variable this function's settings read."""
        return frozenset(
            name
            for _, variable in cls._variable_fields()
            for name in (variable.name, *variable.also_reads)
        )


# --- transform ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformSettings(Settings):
    FUNCTION: ClassVar[str] = "transform"

    raw_bucket: str = required("RAW_BUCKET")
    processed_bucket: str = required("PROCESSED_BUCKET")
    images_table: str = required("IMAGES_TABLE")
    thumbnail_sizes: tuple[int, ...] = integers(
        "THUMBNAIL_SIZES", (128, 512), minimum=16, maximum=4096
    )
    thumbnail_format: str = choice("THUMBNAIL_FORMAT", "JPEG", _thumbnail_formats)
    thumbnail_quality: int = integer(
        "THUMBNAIL_QUALITY", image_defaults.THUMBNAIL_QUALITY, minimum=1, maximum=95
    )
    max_image_pixels: int = integer("MAX_IMAGE_PIXELS", image_defaults.MAX_IMAGE_PIXELS, minimum=1)
    max_image_bytes: int = integer("MAX_IMAGE_BYTES", 100 * MIB, minimum=1)
    datasets: Registry = dataset_registry()  # noqa: RUF009 (a Field: the default is a factory)
    max_data_bytes: int = integer("MAX_DATA_BYTES", 512 * MIB, minimum=1)


# --- archive --------------------------------------------------------------------------------
STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR")
"""Classes readable at once. GLACIER and DEEP_ARCHIVE are left out on purpose: the tag and
bundle handlers read archived images synchronously; move cold data with a lifecycle rule."""


@dataclass(frozen=True)
class ArchiveSettings(Settings):
    FUNCTION: ClassVar[str] = "archive"

    raw_bucket: str = required("RAW_BUCKET")
    archive_bucket: str = required("ARCHIVE_BUCKET")
    processed_bucket: str = required("PROCESSED_BUCKET")
    images_table: str = required("IMAGES_TABLE", default="")
    labels_table: str = required("LABELS_TABLE", default="")
    storage_class: str = choice("ARCHIVE_STORAGE_CLASS", "STANDARD", lambda: STORAGE_CLASSES)
    # Not configurable by environment: the tests choose them to exercise multipart copies.
    multipart_threshold: int = MAX_SINGLE_COPY_BYTES
    part_size: int = DEFAULT_COPY_PART_SIZE
    max_concurrency: int = DEFAULT_COPY_CONCURRENCY
    # Per invocation: the handler sets it from the remaining time (sluice.leases).
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def __post_init__(self) -> None:
        if not MIN_PART_SIZE <= self.part_size <= MAX_SINGLE_COPY_BYTES:
            raise ValueError(
                f"part_size must be between {MIN_PART_SIZE} and {MAX_SINGLE_COPY_BYTES}"
            )
        if not 0 <= self.multipart_threshold <= MAX_SINGLE_COPY_BYTES:
            raise ValueError(f"multipart_threshold must be at most {MAX_SINGLE_COPY_BYTES}")


# --- tag ------------------------------------------------------------------------------------
LABELERS = ("rekognition", "offline")


@dataclass(frozen=True)
class TagSettings(Settings):
    FUNCTION: ClassVar[str] = "tag"

    archive_bucket: str = required("ARCHIVE_BUCKET")
    # A removed archived input (sluice.deletion, decision 30): its receipt, version record
    # and outputs in PROCESSED, and its RAW key's versions.
    raw_bucket: str = required("RAW_BUCKET")
    processed_bucket: str = required("PROCESSED_BUCKET")
    images_table: str = required("IMAGES_TABLE")
    labels_table: str = required("LABELS_TABLE")
    labeler: str = choice("LABELER", "rekognition", lambda: LABELERS)
    label_min_confidence: float = number("LABEL_MIN_CONFIDENCE", 80.0, minimum=0.0, maximum=100.0)
    label_max_labels: int = integer("LABEL_MAX_LABELS", 10, minimum=1, maximum=100)


# --- bundle ---------------------------------------------------------------------------------
MAX_URL_TTL_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs cannot live longer than 7 days."""
DEFAULT_URL_TTL_SECONDS = 24 * 3600


DEFAULT_BUNDLE_EXPIRATION_DAYS = 1
COLD_STORAGE_MODES = ("none", "intelligent_tiering", "glacier")


def _restore_tiers() -> tuple[str, ...]:
    from sluice.restores import TIERS

    return TIERS


@dataclass(frozen=True)
class BundleSettings(Settings):
    FUNCTION: ClassVar[str] = "bundle"

    work_bucket: str = required("WORK_BUCKET")
    archive_bucket: str = required("ARCHIVE_BUCKET")
    labels_table: str = required("LABELS_TABLE")
    images_table: str = required("IMAGES_TABLE")
    topic_arn: str = required("BUNDLE_TOPIC_ARN")
    url_ttl_seconds: int = integer(
        "BUNDLE_URL_TTL_SECONDS", DEFAULT_URL_TTL_SECONDS, minimum=1, maximum=MAX_URL_TTL_SECONDS
    )
    notify_topic_prefix: str = required("NOTIFY_TOPIC_PREFIX", default="sluice-bundle-")
    """Names of the per-request recipient topics (sluice.request_topics), which the
    bundle role may create and delete, and only these."""
    request_expiration_days: int = integer(
        "BUNDLE_EXPIRATION_DAYS", DEFAULT_BUNDLE_EXPIRATION_DAYS, minimum=1, maximum=3650
    )
    """Days WORK keeps ``requests/`` and ``bundles/`` (the lifecycle rule of the same
    variable); a request's notification topic is deleted by then, delivered or not."""
    cold_storage: str = choice("ARCHIVE_COLD_STORAGE", "none", lambda: COLD_STORAGE_MODES)
    """``none`` (every archived image is instantly readable, so none is looked at first),
    ``intelligent_tiering`` or ``glacier`` (sluice.restores)."""
    restore_tier: str = choice("RESTORE_TIER", "Standard", _restore_tiers)
    restore_days: int = integer("RESTORE_DAYS", 1, minimum=1, maximum=30)


# --- api ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiSettings(Settings):
    FUNCTION: ClassVar[str] = "api"

    raw_bucket: str = required("RAW_BUCKET")
    processed_bucket: str = required("PROCESSED_BUCKET")
    archive_bucket: str = required("ARCHIVE_BUCKET")
    work_bucket: str = required("WORK_BUCKET")
    images_table: str = required("IMAGES_TABLE")
    labels_table: str = required("LABELS_TABLE")
    upload_role_arn: str = required("UPLOAD_ROLE_ARN")
    region: str = region()
    max_upload_bytes: int = integer("MAX_UPLOAD_BYTES", 5 * GIB, minimum=1)
    # STS's minimum session is 900 s; the upload role allows at most 3600 s.
    upload_url_ttl_seconds: int = integer("UPLOAD_URL_TTL_SECONDS", 900, minimum=900, maximum=3600)
    link_ttl_seconds: int = integer("LINK_TTL_SECONDS", 900, minimum=1, maximum=604800)
    max_data_bytes: int | None = optional_integer("MAX_DATA_BYTES")
    """The transform's ``MAX_DATA_BYTES`` when Terraform passes it on; data files above it
    are refused (the transform would reject them unread)."""
    datasets: Registry = dataset_registry()  # noqa: RUF009 (a Field: the default is a factory)
    """The environment's datasets (``DATASETS``, as the transform reads them): data uploads
    go under their prefixes."""


SETTINGS_CLASSES: tuple[type[Settings], ...] = (
    TransformSettings,
    ArchiveSettings,
    TagSettings,
    BundleSettings,
    ApiSettings,
)
"""One per function, in the order docs/contracts.md lists them."""
