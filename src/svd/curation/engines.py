"""Where the per-video work of `svd curate` runs: `curate.engine` picks a local process pool or Ray actors.

Both map the same function (svd.curation.pipeline.curate_video, one decode per video) over the same job list and
hand back one result per video in job order, so the dataset-level steps that follow (filters, expectations, files)
see identical input and write identical bytes whichever engine ran. Annotator models are built once per worker
(process or actor), never per video.

Ray: `curate.ray.address` joins an existing cluster; empty starts a private local one for this run and stops it
afterwards (ray_init_kwargs says how it is protected). Each actor asks for `cpus_per_worker` CPUs and
`gpus_per_worker` of a GPU (the annotators that
run on one). Actors restart when their process dies; the video it was curating goes back on the queue, and the
driver keeps only the result of the attempt that finished, so a killed worker neither loses nor duplicates clips.
A video that kills its worker `max_attempts` times is quarantined with that reason, like any unreadable video.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from svd.config import Params

Job = tuple[str, str]  # (video path, video name)


class VideoWorker:
    """The annotators and the world's truth index, built once; `run` curates one video into a picklable result."""

    def __init__(self, params: Params, truth_dir: str | None, threads: int):
        from svd.curation.annotate import Annotators
        from svd.curation.pipeline import TruthIndex
        from svd.runtime import set_threads

        set_threads(max(1, threads))
        self.params = params
        self.annotators = Annotators(params)
        self.truth = TruthIndex(Path(truth_dir) if truth_dir else None)
        self.ready_at = time.time()  # models built: the engines report start-up as the last worker's ready time

    def run(self, job: Job) -> dict:
        from svd.curation.pipeline import curate_video
        from svd.io.video import VideoReadError

        path, name = job
        # which backends produced the values travels with the result, so the driver never builds the models itself
        described = {"backends": self.annotators.backends, "real": self.annotators.real, "ready_at": self.ready_at}
        try:
            return {**curate_video(Path(path), name, self.params, self.annotators, self.truth), **described}
        except VideoReadError as exc:
            return {"error": str(exc), **described}

    def pid(self) -> int:
        return os.getpid()


Progress = Callable[[int, int], None]  # (videos finished, videos in all), called on the driver as results arrive


def map_videos(
    params: Params, jobs: list[Job], truth_dir: str | None, progress: Progress | None = None
) -> tuple[list[dict], dict]:
    """One result per job, in job order, and a description of the run (engine, workers, retries, start-up seconds)
    that belongs in metrics and MLflow, not in the dataset."""
    if params.curate.engine == "ray":
        return map_ray(params, jobs, truth_dir, progress)
    return map_local(params, jobs, truth_dir, progress)


# -- local: a process pool ----------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_local(params: Params, truth_dir: str | None, threads: int) -> None:
    _WORKER["worker"] = VideoWorker(params, truth_dir, threads)


def _run_local(job: Job) -> dict:
    return _WORKER["worker"].run(job)


def map_local(
    params: Params, jobs: list[Job], truth_dir: str | None, progress: Progress | None = None
) -> tuple[list[dict], dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(params.curate.workers, len(jobs))
    threads = max(1, params.threads // max(1, workers))
    started = time.time()
    results = []
    if workers > 1:
        # forkserver, not fork: a fork of a process whose torch/OpenMP threads have run (a caller that curated or
        # trained before) can hang in the child
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init_local,
            initargs=(params, truth_dir, threads),
        ) as pool:
            for result in pool.map(_run_local, jobs):
                results.append(result)
                if progress:
                    progress(len(results), len(jobs))
    else:
        worker = VideoWorker(params, truth_dir, threads)
        for job in jobs:
            results.append(worker.run(job))
            if progress:
                progress(len(results), len(jobs))
    startup = max(r["ready_at"] for r in results) - started  # the slowest worker's set-up
    return results, {"engine": "local", "workers": workers, "startup_seconds": round(startup, 2)}


# -- ray: actors on a cluster -------------------------------------------------------------------------------------
def ray_init_kwargs(params: Params) -> dict:
    """ray.init arguments for `curate.ray`: join the configured cluster, or start a private one for this run, sized
    for the requested workers, with no dashboard (usage stats are off through RAY_USAGE_STATS_ENABLED).

    A private cluster is not reachable without its token: Ray 2.60 turns token authentication on by default and
    writes the token to ~/.ray/auth_token. It cannot be bound to 127.0.0.1 (Ray replaces a loopback node address
    with the machine's own IP so that other nodes could join). Joining a cluster started with `ray start` needs
    RAY_AUTH_MODE=token in the driver's environment and the cluster's token (RAY_AUTH_TOKEN or the file)."""
    cfg = params.curate.ray
    if cfg.address:
        return {"address": cfg.address, "log_to_driver": True}
    cpus = max(os.cpu_count() or 1, int(round(params.curate.workers * cfg.cpus_per_worker)))
    return {"num_cpus": cpus, "include_dashboard": False, "object_store_memory": 256 * 2**20, "log_to_driver": True}


def map_ray(
    params: Params, jobs: list[Job], truth_dir: str | None, progress: Progress | None = None
) -> tuple[list[dict], dict]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.exceptions import RayActorError

    cfg = params.curate.ray
    started = time.time()
    own_cluster = not ray.is_initialized()
    if own_cluster:
        ray.init(**ray_init_kwargs(params))
    actors = []
    try:
        worker_cls = ray.remote(
            num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker or None, max_restarts=-1, max_task_retries=0
        )(VideoWorker)
        threads = max(1, int(cfg.cpus_per_worker))
        count = min(params.curate.workers, len(jobs))
        actors = [
            worker_cls.options(name=f"svd-curate-{os.getpid()}-{i}").remote(params, truth_dir, threads)
            for i in range(count)
        ]
        ray.get([actor.pid.remote() for actor in actors])  # models built: what follows is curation, not start-up
        startup = time.time() - started

        results: list[dict | None] = [None] * len(jobs)
        attempts = [0] * len(jobs)
        # Videos go only to actors known to be up (free). After a failure the actor is probed (pid) until its
        # restarted process answers; a probe sent while Ray is still restarting it fails fast and is sent again.
        queue, free = deque(range(len(jobs))), deque(range(count))
        running: dict = {}  # object ref -> (job index, or None for a probe; actor index)
        # A video still running after video_timeout_s (a hung decoder) has its actor killed: Ray restarts the actor
        # and the video fails like any other worker death (retried, then quarantined).
        deadlines: dict = {}  # object ref of a video -> when its actor is killed
        timeouts = [0] * len(jobs)
        retried = finished = 0
        while queue or any(index is not None for index, _ in running.values()):
            while queue and free:
                index, actor = queue.popleft(), free.popleft()
                attempts[index] += 1
                ref = actors[actor].run.remote(jobs[index])
                running[ref] = (index, actor)
                if cfg.video_timeout_s:
                    deadlines[ref] = time.time() + cfg.video_timeout_s
            wait = max(0.0, min(deadlines.values()) - time.time()) if deadlines else None
            done, _ = ray.wait(list(running), num_returns=1, timeout=wait)
            if not done:
                for ref in [r for r, when in deadlines.items() if when <= time.time()]:
                    del deadlines[ref]
                    index, actor = running[ref]
                    timeouts[index] += 1
                    ray.kill(actors[actor], no_restart=False)
                continue
            deadlines.pop(done[0], None)
            index, actor = running.pop(done[0])
            try:
                value = ray.get(done[0])
            except RayActorError as exc:
                if index is None:
                    time.sleep(0.2)
                running[actors[actor].pid.remote()] = (None, actor)
                if index is None:
                    continue
                if attempts[index] < cfg.max_attempts:
                    retried += 1
                    queue.appendleft(index)
                    continue
                value = {
                    "error": f"its curation worker died {attempts[index]} times ({type(exc).__name__}"
                    + (
                        f"; {timeouts[index]} killed after curate.ray.video_timeout_s={cfg.video_timeout_s:g} s"
                        if timeouts[index]
                        else ""
                    )
                    + ")"
                }
            else:
                free.append(actor)
                if index is None:
                    continue
            results[index] = value
            finished += 1
            if progress:
                progress(finished, len(jobs))
        described = next((r for r in results if "backends" in r), None)
        if described is None:
            hung = sum(1 for t in timeouts if t)
            raise RuntimeError(
                f"every curation worker died on every video ({len(jobs)} videos, "
                f"{cfg.max_attempts} attempts each"
                + (f"; {hung} of them ran past curate.ray.video_timeout_s={cfg.video_timeout_s:g} s" if hung else "")
                + "); see the Ray worker logs"
            )
        for i, r in enumerate(results):  # a quarantined-by-crash result still says which backends the run used
            if "backends" not in r:
                results[i] = {**r, "backends": described["backends"], "real": described["real"]}
        return results, {
            "engine": "ray",
            "workers": count,
            "retried": retried,
            "timed_out": sum(timeouts),
            "startup_seconds": round(startup, 2),
        }
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if own_cluster:
            ray.shutdown()
