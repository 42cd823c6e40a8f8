"""The real dvc.yaml, read by DVC itself: what each stage's cache key covers."""

from pathlib import Path

import yaml
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]


def _stages():
    return {stage.name: stage for stage in Repo(str(ROOT)).index.stages}


def _params(stage) -> list[str]:
    return [name for dep in stage.deps if isinstance(dep, ParamsDependency) for name in dep.params]


def test_every_stage_depends_on_the_active_profile_only():
    """A stage re-runs when the active profile's overrides change, never because another profile was edited (the
    whole `profiles` block as a dependency made an a100 edit re-run the tiny world, curation and VAE)."""
    active = yaml.safe_load((ROOT / "params.yaml").read_text())["profile"]
    stages = _stages()
    assert {"world", "curate", "train_vae", "train_video", "evaluate_hq", "register"} <= set(stages)
    for name, stage in stages.items():
        params = _params(stage)
        assert "profiles" not in params, name
        assert f"profiles.{active}" in params and "profile" in params, (name, params)


def test_the_curated_dataset_is_an_output_apart_from_its_gx_project():
    """Training stages depend on data/curated, whose bytes repeat; the GX project (timestamps) is its own output."""
    stages = _stages()
    outs = {str(out.def_path) for out in stages["curate"].outs if not out.metric}
    assert outs == {"data/curated", "data/curated-gx"}
    for name in ("train_vae", "train_image", "train_video", "train_hq"):
        deps = {str(dep.def_path) for dep in stages[name].deps}
        assert "data/curated" in deps and "data/curated-gx" not in deps, name


def test_image_to_video_stages_follow_their_parents():
    """train_i2v depends on the model train.i2v.parent names (DVC templating), i2v_xt on i2v, both on the FVD net."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = _stages()
    deps = {name: {str(dep.def_path) for dep in stages[name].deps} for name in ("train_i2v", "train_i2v_xt")}
    assert f"models/{raw['train']['i2v']['parent']}" in deps["train_i2v"]
    assert raw["train"]["i2v_xt"]["parent"] == "i2v" and "models/i2v" in deps["train_i2v_xt"]
    for name in deps:
        assert {"models/fvd_i3d", "src/svd/tasks/image_to_video.py", "src/svd/evaluation/image_to_video.py"} <= deps[
            name
        ], name


def test_camera_lora_stages_follow_their_base_and_their_own_block():
    """One stage per adapter (foreach), each on models/<its parent> (i2v) and its own train.lora_<name> block."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = _stages()
    for name in ("horizontal", "zoom", "static"):
        stage = stages[f"train_lora@{name}"]
        deps = {str(dep.def_path) for dep in stage.deps}
        assert f"models/{raw['train'][f'lora_{name}']['parent']}" in deps, name
        assert {"src/svd/tasks/camera_lora.py", "src/svd/evaluation/camera.py", "src/svd/curation/camera.py"} <= deps
        params = _params(stage)
        assert f"train.lora_{name}" in params and "evaluate.camera_lora" in params and "train" not in params, params


def _svd_imports(module: str, within: tuple[str, ...]) -> set[str]:
    """The svd modules under `within` (package prefixes) that `module` imports, directly or through each other
    (module-level and function-level imports alike), `module` included."""
    import ast

    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / "src" / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            found = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module]
            todo += [f for f in found if f.startswith(within)]
    return seen


def test_task_stages_depend_on_every_task_and_world_module_they_import():
    """Task and world deps are listed file by file (a new task module or a new world part re-runs nothing else), so
    every module a stage's task reaches must be listed, or its edits would not re-run the stage."""
    from svd import tasks

    stages = _stages()
    checked = 0
    for stage in stages.values():
        words = stage.cmd.split() if isinstance(stage.cmd, str) else []
        if words[:3] != ["svd", "train", "--stage"] or words[3] not in tasks.STAGE_TASKS:
            continue
        deps = {str(dep.def_path) for dep in stage.deps}
        module = f"svd.tasks.{tasks.STAGE_TASKS[words[3]]}"
        for name in _svd_imports(module, ("svd.tasks", "svd.world")) | {"svd.tasks"}:
            rel = Path("src", *name.split("."))
            files = [rel / "__init__.py"] if (ROOT / rel).is_dir() else [rel.with_suffix(".py")]
            covered = any(str(f) in deps or any(str(p) in deps for p in f.parents) for f in files)
            assert covered, (stage.addressing, name)
        checked += 1
    assert checked >= 9  # Stages I-III, two image-to-video stages, three LoRAs, interpolation


def test_a_training_stage_reruns_for_its_own_block_only():
    """Editing train.i2v.steps must not re-run Stages I-III: each stage names its own train.<stage> block (plus the
    loop's shared keys), never the whole `train` block."""
    stages = _stages()
    for name in ("train_image", "train_video", "train_hq", "train_i2v", "train_i2v_xt", "train_interp"):
        params = _params(stages[name])
        assert "train" not in params and f"train.{name.removeprefix('train_')}" in params, (name, params)
        others = [
            p
            for p in params
            if p.startswith("train.")
            and p.count(".") == 1
            and p.split(".")[1] in ("image", "video", "hq", "i2v", "i2v_xt", "vae", "interp")
            or p.startswith("train.lora_")
        ]
        assert others == [f"train.{name.removeprefix('train_')}"], (name, others)
