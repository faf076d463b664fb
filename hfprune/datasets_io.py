"""Reading datasets, local files or Hub ids, with one-line errors: shared by calibration and recovery data."""

from __future__ import annotations

from pathlib import Path

from .errors import DataError

LOCAL_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".parquet", ".md")


def check_local_data(data: str, what: str = "--data") -> None:
    """A path-like argument that does not exist is a typo, not a Hub dataset id: say so at once (a Hub lookup
    would retry for a minute before failing)."""
    path = Path(data).expanduser()
    if path.exists():
        return
    looks_local = (data.startswith((".", "/", "~")) or path.suffix.lower() in LOCAL_SUFFIXES
                   or data.count("/") > 1 or "\\" in data)
    if looks_local:
        raise DataError(f"{what} {data}: no such file; give an existing .txt/.json/.jsonl file or a Hub dataset id "
                        "like org/name[:config]")


def load_dataset(*args, **kwargs):
    """datasets.load_dataset with offline fast-fail and one-line DataErrors."""
    import datasets
    from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

    datasets.disable_progress_bars()
    if args and args[0] not in ("json", "text", "csv", "parquet"):
        from .hub import offline_unless_reachable

        offline_unless_reachable()  # a Hub dataset while offline: the cache or a fast, clear failure
    try:
        return datasets.load_dataset(*args, **kwargs)
    except DatasetGenerationError as e:
        cause = e.__cause__ or e.__context__
        raise DataError(f"cannot read data {args[0]!r}: {str(cause or e).splitlines()[0]}") from None
    except DatasetNotFoundError:
        raise DataError(f"dataset {args[0]!r} was not found (offline? give a local .txt/.json/.jsonl file)") from None
    except ConnectionError:
        raise DataError(f"cannot reach the Hub to load {args[0]!r}; give a local .txt/.json/.jsonl file") from None
    except Exception as e:  # noqa: BLE001 - offline-mode errors of datasets/huggingface_hub have no common base
        if type(e).__name__ not in ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "HfHubHTTPError"):
            raise
        raise DataError(f"cannot reach the Hub to load {args[0]!r} and it is not cached; give a local "
                        ".txt/.json/.jsonl file") from None
    except (ValueError, FileNotFoundError) as e:
        raise DataError(f"cannot load data {args[0]!r}: {str(e).splitlines()[0]}") from None
