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


def read_json_rows(path: str | Path, what: str = "--data") -> list[tuple[str, dict]]:
    """The rows of a local .jsonl (one object per line) or .json (an array of objects, or one object per line)
    file as (where, row) pairs, `where` naming the line ('data.jsonl line 12') or array position. A malformed
    line, or a row that is not an object, is one DataError naming it."""
    import json

    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{what} {path.name} is not UTF-8 text") from None
    if not text.strip():
        raise DataError(f"{what} {path.name} is empty")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{what} {path.name} line {e.lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise DataError(f"{what} {path.name} is nested too deeply") from None
        rows = [(f"{path.name} row {i + 1}", row) for i, row in enumerate(data)]
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path.name} line {number}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{what} {path.name} line {number}: not valid JSON ({e.msg}); fix or remove that "
                                "line") from None
            except RecursionError:
                raise DataError(f"{what} {path.name} line {number} is nested too deeply") from None
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{what} {where}: a row must be a JSON object with named fields, not "
                            f"{type(row).__name__}")
    return rows


def string_field(row: dict, key: str, where: str, what: str, required: bool = True) -> str:
    """row[key] as a string: a missing required field, or a value that is not a string (or null, for an optional
    one), is one DataError naming the row and the field."""
    if key not in row or row[key] is None:
        if required:
            raise DataError(f"{what} {where} has no {key!r}; every row needs it (rows: {sorted(row)})")
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{what} {where}: {key!r} is a {type(value).__name__}, not a string")
    return value
