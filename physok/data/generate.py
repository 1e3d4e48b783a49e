"""Write an embedded dataset to disk in The Well's layout: splits, files per parameter set, stats.

The whole dataset is built under `<base>/.<name>.partial` and renamed into place at the end, so
an interrupted run never leaves a folder that looks complete. A finished dataset records the
request that made it (`physok_generation.json`) so re-running with the same request reuses it.

One writer at a time: `generate_datasets` holds the data folder's lock (`<base>/.physok-data.lock`,
`physok.run_lock`) while it writes, so a second run into the same folder is refused, and the
process building a dataset holds that dataset's lock (`<base>/.<name>.lock`) while its
`.partial` folder exists, so a leftover `.partial` is deleted only once its writer is gone.
Worker processes die with the process that started them (`physok.parent_watch`): a killed run
leaves no worker behind that goes on writing. A failed write (a full disk) removes the
`.partial` folder and raises `physok.write_errors.WriteError`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing.managers import SyncManager
from pathlib import Path
from queue import Empty, Queue

import numpy as np
from tqdm.auto import tqdm

from physok.data.errors import DataError, StaleDatasetError
from physok.data.generators import get_generator
from physok.data.generators.base import DatasetGenerator, SimulationRequest
from physok.data.manifest import describe_files, file_problems
from physok.data.stats import compute_stats, write_stats_yaml
from physok.data.well_format import write_well_file
from physok.parent_watch import exit_with_parent
from physok.run_lock import FolderLock, FolderLockedError, lock_file_beside
from physok.write_errors import writing

SPLITS: tuple[str, ...] = ("train", "valid", "test")
GENERATION_RECORD = "physok_generation.json"
# The embedded default of the fast experiment: downstream Euler plus the paper's out-of-domain
# pretraining mixture (Gray-Scott is generated only when named).
DEFAULT_DATASETS: tuple[str, ...] = (
    "euler_multi_quadrants_periodicBC",
    "shear_flow",
    "rayleigh_benard",
    "active_matter",
)
DATA_LOCK_FILE = ".physok-data.lock"
PARTIAL_SUFFIX = ".partial"
# How long a dataset's writer waits for the previous holder of its lock: only a run that was
# just killed can still hold it (a live run holds the data folder's lock as well), and its
# workers are ending.
DATASET_LOCK_WAIT_S = 10.0


@dataclass(frozen=True)
class GenerationConfig:
    """How much of a dataset to simulate. `trajectories` counts all splits together."""

    resolution: tuple[int, int] = (64, 64)
    trajectories: int = 24
    steps: int = 40
    seed: int = 0
    valid_fraction: float = 0.125
    test_fraction: float = 0.125

    @classmethod
    def fast(cls) -> GenerationConfig:
        """The embedded default used by the fast experiment (64x64, 24 trajectories, 40 steps)."""
        return cls()

    def validate(self) -> None:
        x, y = self.resolution
        if x < 8 or y < 8:
            raise DataError(f"--resolution must be at least 8 in each dimension, got {x}x{y}")
        if self.trajectories < 3:
            raise DataError(
                f"--trajectories must be at least 3 (one each for train, valid and test), "
                f"got {self.trajectories}"
            )
        if self.steps < 2:
            raise DataError(f"--steps must be at least 2 snapshots, got {self.steps}")

    def split_sizes(self) -> dict[str, int]:
        n_valid = max(1, round(self.trajectories * self.valid_fraction))
        n_test = max(1, round(self.trajectories * self.test_fraction))
        n_train = self.trajectories - n_valid - n_test
        if n_train < 1:
            raise DataError(
                f"--trajectories {self.trajectories} leaves no training trajectory; use more"
            )
        return {"train": n_train, "valid": n_valid, "test": n_test}


def _files_for_split(
    gen: DatasetGenerator, n_trajectories: int
) -> list[tuple[int, dict[str, float], int]]:
    """Spread a split's trajectories over the first parameter sets: (index, params, count)."""
    n_files = min(len(gen.parameter_sets), n_trajectories)
    counts = [n_trajectories // n_files + (i < n_trajectories % n_files) for i in range(n_files)]
    return [(i, gen.parameter_sets[i], counts[i]) for i in range(n_files)]


def _advance(on_snapshots: Callable[[int], object], n_trajectories: int, snapshots: int) -> None:
    on_snapshots(snapshots * n_trajectories)


def _seed_for(seed: int, split_index: int, param_index: int) -> int:
    # Independent, reproducible streams per (split, parameter set): no overlap between splits.
    return int(np.random.SeedSequence([seed, split_index, param_index]).generate_state(1)[0])


def generate_dataset(
    name: str,
    base: str | Path,
    config: GenerationConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate dataset `name` and write it under `base/name`; return that folder.

    If the folder exists and was made by the same request it is reused; if it was made
    differently, a DataError says so (pass overwrite=True to replace it).
    """
    config = config or GenerationConfig()
    with tqdm(
        total=_total_snapshots(config), desc=f"generate {name}", unit="snap", disable=not progress
    ) as bar:
        return _generate(name, base, config, overwrite, bar.update)


def _record(name: str, config: GenerationConfig) -> dict:
    """What `physok_generation.json` holds for dataset `name` made with `config`."""
    return {"dataset": name, **asdict(config), "resolution": list(config.resolution)}


def _total_snapshots(config: GenerationConfig) -> int:
    return config.trajectories * config.steps


def _generate(
    name: str,
    base: str | Path,
    config: GenerationConfig,
    overwrite: bool,
    on_snapshots: Callable[[int], object],
) -> Path:
    config.validate()
    gen = get_generator(name)
    base = _check_base(base)
    target = base / name
    record = _record(name, config)

    if _reusable(target, record, overwrite):
        on_snapshots(_total_snapshots(config))
        return target
    lock = _dataset_lock(target).acquire(timeout=DATASET_LOCK_WAIT_S)
    try:
        if _reusable(target, record, overwrite):  # finished by a run this one waited for
            on_snapshots(_total_snapshots(config))
            return target
        with writing(target, f"dataset {name}"):
            return _write_dataset(gen, name, target, config, record, on_snapshots)
    finally:
        lock.release()


def _check_base(base: str | Path) -> Path:
    base = Path(base)
    if base.exists() and not base.is_dir():
        raise DataError(f"--out {base} is a file, not a folder; choose a folder for the datasets")
    return base


def _reusable(target: Path, record: dict, overwrite: bool) -> bool:
    """True when `target` holds the dataset `record` asks for, with the files its generation
    record lists (sizes and hashes): such a dataset is reused even with `overwrite` (the solvers
    are deterministic, regenerating it would write the same files); a StaleDatasetError when it
    holds another one, or damaged files, and `overwrite` is off."""
    if not target.exists():
        return False
    previous = read_generation_record(target)
    settings = None if previous is None else {k: v for k, v in previous.items() if k != "files"}
    if settings == record:
        problems = _file_problems(target, previous)
        if not problems:
            return True
        if not overwrite:
            raise StaleDatasetError(
                f"{target} does not match the record made when it was generated "
                f"({'; '.join(problems[:5])}{'; ...' if len(problems) > 5 else ''}); pass "
                "--overwrite to generate it again",
                str(target),
                "files",
                tuple(problems),
            )
    elif not overwrite:
        raise StaleDatasetError(
            f"{target} already exists and was not generated with these settings "
            f"(found {settings}); pass --overwrite to replace it or choose another --out",
            str(target),
            "settings",
        )
    return False


def _dataset_lock(target: Path) -> FolderLock:
    return FolderLock(target, lock_file_beside(target), what="dataset folder")


def _write_dataset(
    gen: DatasetGenerator,
    name: str,
    target: Path,
    config: GenerationConfig,
    record: dict,
    on_snapshots: Callable[[int], object],
) -> Path:
    """Build the dataset in its `.partial` folder and rename it to `target` (under its lock)."""
    staging = target.parent / f".{name}{PARTIAL_SUFFIX}"
    if staging.exists():  # left by a killed run: its lock is ours now, so its writer is gone
        shutil.rmtree(staging)
    sizes = config.split_sizes()
    try:
        for split_index, split in enumerate(SPLITS):
            for param_index, params, n in _files_for_split(gen, sizes[split]):
                request = SimulationRequest(
                    n_trajectories=n,
                    resolution=config.resolution,
                    n_steps=config.steps,
                    seed=_seed_for(config.seed, split_index, param_index),
                    parameters=dict(params),
                    progress=partial(_advance, on_snapshots, n),
                )
                try:
                    trajectories = gen.simulate(request)
                except DataError:
                    raise
                except ValueError as e:  # the solver rejected an option (e.g. grid too small)
                    raise DataError(str(e)) from e  # solvers name their dataset
                write_well_file(staging / "data" / split / gen.file_name(params), trajectories)
        write_stats_yaml(staging / "stats.yaml", compute_stats(staging / "data" / "train"))
        # the files' sizes and hashes: a re-run reuses the dataset only while they match
        full_record = {**record, "files": describe_files(staging)}
        (staging / GENERATION_RECORD).write_text(json.dumps(full_record, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():  # ignore_errors: a failing clean-up must not hide the first error
            shutil.rmtree(staging, ignore_errors=True)
    return target


def generate_datasets(
    names: Sequence[str],
    base: str | Path,
    config: GenerationConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    jobs: int = 1,
) -> list[Path]:
    """Generate several datasets with the same settings (each reused when already there).

    With `jobs > 1` datasets are simulated in that many processes at once (the solvers are
    single-threaded NumPy, so on 2 cores two jobs nearly halve the time). The data does not
    depend on `jobs`: every dataset and file has its own seed.
    """
    for name in names:
        get_generator(name)  # fail on a typo before spending minutes on the others
    config = config or GenerationConfig()
    config.validate()
    jobs = max(1, min(jobs, len(names)))
    base = _check_base(base)
    if _all_reusable(names, base, config, overwrite):
        lock = None  # nothing to write (the folder may even be read-only): no lock needed
    else:
        lock = FolderLock(
            base,
            base / DATA_LOCK_FILE,
            what="data folder",
            hint="it is generating datasets there: wait for it to finish or stop it, then "
            "rerun, or choose another data folder",
        ).acquire()
    try:
        if lock is not None:
            remove_stale_partials(base)
        return _generate_all(names, base, config, overwrite, progress, jobs)
    finally:
        if lock is not None:
            lock.release()


def _all_reusable(
    names: Sequence[str], base: Path, config: GenerationConfig, overwrite: bool
) -> bool:
    try:
        return all(_reusable(base / n, _record(n, config), overwrite) for n in names)
    except DataError:
        return False  # reported by the generation itself, in dataset order


def remove_stale_partials(base: str | Path) -> list[Path]:
    """Delete the `.partial` folders of killed runs in `base` (those whose dataset lock is
    free); a folder being written by a live process is left alone. Returns the removed ones."""
    removed = []
    for staging in sorted(Path(base).glob(f".*{PARTIAL_SUFFIX}")):
        name = staging.name[1 : -len(PARTIAL_SUFFIX)]
        lock = _dataset_lock(staging.parent / name)
        try:
            lock.acquire()
        except FolderLockedError:
            continue
        try:
            if staging.is_dir():
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
        finally:
            lock.release()
    return removed


def _generate_all(
    names: Sequence[str],
    base: Path,
    config: GenerationConfig,
    overwrite: bool,
    progress: bool,
    jobs: int,
) -> list[Path]:
    if jobs == 1:
        return [
            generate_dataset(name, base, config, overwrite=overwrite, progress=progress)
            for name in names
        ]
    # spawn, not fork: the caller may already run torch's OpenMP threads, which fork can deadlock.
    # Every helper process dies with this one (exit_with_parent): a killed run leaves none behind.
    ctx = mp.get_context("spawn")
    manager = SyncManager(ctx=ctx)
    manager.start(exit_with_parent, (os.getpid(),))
    with (
        manager,
        ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=exit_with_parent, initargs=(os.getpid(),)
        ) as pool,
    ):
        queue = manager.Queue()
        bars = {
            name: tqdm(
                total=_total_snapshots(config),
                desc=f"generate {name}",
                unit="snap",
                position=i,
                disable=not progress,
            )
            for i, name in enumerate(names)
        }
        futures = [
            pool.submit(_generate_in_worker, name, base, config, overwrite, queue) for name in names
        ]
        try:
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                _drain(queue, bars)
                if any(f.done() and f.exception() for f in futures):
                    break
            return [f.result() for f in futures]  # re-raises a worker's error here
        finally:
            for f in futures:
                f.cancel()
            _drain(queue, bars)
            for bar in bars.values():
                bar.close()


def _generate_in_worker(
    name: str, base: str | Path, config: GenerationConfig, overwrite: bool, queue: Queue
) -> Path:
    return _generate(name, base, config, overwrite, partial(_put, queue, name))


def _put(queue: Queue, name: str, n: int) -> None:
    queue.put((name, n))


def _drain(queue: Queue, bars: dict[str, tqdm]) -> None:
    while True:
        try:
            name, n = queue.get_nowait()
        except Empty:
            return
        bars[name].update(n)


def _file_problems(target: Path, record: dict) -> list[str]:
    """How `target`'s files differ from those its record lists; a record from before physok
    kept file lists gets The Well layout check instead (missing splits, unreadable files)."""
    if isinstance(record.get("files"), dict):
        return file_problems(target, record["files"])
    from physok.data.check import check_path

    return check_path(target, values=False).errors


def read_generation_record(folder: str | Path) -> dict | None:
    """The request that generated the dataset in `folder`, or None if physok did not make it
    (e.g. a real Well copy) or the record is unreadable."""
    path = Path(folder) / GENERATION_RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
