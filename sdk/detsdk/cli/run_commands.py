"""``sdk run``, ``sdk eval`` and ``sdk predict``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import click

from detsdk.cli.options import debug_option
from detsdk.errors import DetSDKError, RecipeError

recipe_argument = click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))


def engine_options(function):
    """``--set``, ``--work-dir`` and ``--device``, shared by the commands that build an engine."""
    function = click.option("--device", default=None, help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")(function)
    function = click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Where the run writes (default: runtime.work_dir, else runs/<recipe>).")(function)
    function = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                            help="Override a recipe key, e.g. --set train.epochs=12 (repeatable).")(function)
    return debug_option(function)


@click.command("run")
@recipe_argument
@engine_options
@click.option("--resume", is_flag=True, help="Continue from <work_dir>/last.pt.")
@click.option("--nproc", type=int, default=None,
              help="Train with N processes on this node (DDP through torchrun): one per GPU, or gloo on the CPU.")
@click.option("--nnodes", default="1", show_default=True, help="Nodes taking part (torchrun --nnodes).")
@click.option("--node-rank", type=int, default=None,
              help="This node's rank, 0 at --rdzv-endpoint (static rendezvous); without it nodes get numbered.")
@click.option("--rdzv-endpoint", default="", metavar="HOST:PORT",
              help="Where the nodes meet (torchrun --rdzv-endpoint); needed with --nnodes > 1.")
@click.pass_context
def run_command(ctx, recipe, overrides, work_dir, device, resume, nproc, nnodes, node_rank, rdzv_endpoint):
    """Train the detector RECIPE describes, then evaluate it."""
    if nproc is not None:
        from detsdk.engine import distributed, launch

        if distributed.launched_by_torchrun():
            raise RecipeError("--nproc starts torchrun itself; inside torchrun, leave it out")
        worker = ["--debug"] if (ctx.obj or {}).get("debug") else []
        worker += ["run", str(recipe), *(f"--set={o}" for o in overrides)]
        worker += [f"--work-dir={work_dir}"] * bool(work_dir) + [f"--device={device}"] * bool(device)
        worker += ["--resume"] * resume
        arguments = launch.torchrun_arguments(nproc, worker, nnodes, node_rank, rdzv_endpoint)
        ctx.exit(launch.launch(arguments, nproc))
    from detsdk.engine import Engine, distributed

    with errors_name_the_rank((ctx.obj or {}).get("debug", False)):
        engine = Engine.from_recipe(recipe, overrides, work_dir=work_dir, device=device)
        metrics = engine.fit(resume=resume)
        main_process = distributed.is_main_process()
        distributed.destroy()
    if main_process:
        click.echo(f"work dir: {engine.work_dir}")
        if metrics:
            click.echo(f"metrics: {engine.work_dir / 'metrics.json'}")
        click.echo(f"checkpoints: {engine.work_dir / 'best.pt'}, {engine.work_dir / 'last.pt'}")
        click.echo(f"plots: {engine.work_dir / 'plots'}")


@contextlib.contextmanager
def errors_name_the_rank(debug: bool = False) -> Iterator[None]:
    """Under torchrun, make a failure say which rank it happened on, and end this process.

    A user error (``DetSDKError``) is raised again with ``rank R:`` in front,
    for the CLI to print on one line and exit 2. A rank that lost contact
    with a failed one, or waited longer than ``runtime.dist_timeout`` for a
    stuck one, says so on one line and exits 1. Any other exception
    prints its traceback and ``error: rank R: <Type>: <message>``, then exits
    1. Either way torchrun's agent sees a failed rank and stops the others.
    """
    from detsdk.engine import distributed

    if not distributed.launched_by_torchrun():
        yield
        return
    rank = os.environ.get("RANK", "?")
    try:
        yield
    except DetSDKError as exc:
        from detsdk.cli.main import one_line  # main imports this module

        raise type(exc)(f"rank {rank}: {one_line(exc)}") from (exc if debug else None)
    except Exception as exc:
        if debug:
            raise
        if distributed.lost_contact(exc):  # not this rank's fault: the failing rank says why
            click.echo(f"error: rank {rank}: stopped: lost contact with another rank, which failed or was stopped",
                       err=True)
            sys.exit(1)
        if distributed.timed_out(exc):  # a stuck rank (hung data loading, a deadlock): this one gives up
            click.echo(f"error: rank {rank}: stopped: another rank did not answer within runtime.dist_timeout "
                       f"({(str(exc).strip().splitlines() or [''])[0]})", err=True)
            sys.exit(1)
        traceback.print_exc()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        click.echo(f"error: rank {rank}: {type(exc).__name__}: {first_line}", err=True)
        sys.exit(1)


def evaluation_sources(function):
    """``--checkpoint FILE`` or ``--results FILE.json``: what ``sdk eval`` and ``sdk analyze`` evaluate."""
    function = click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
                            help="Saved COCO-format detections to score (no model, no images).")(function)
    return click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
                        help="Weights to evaluate.")(function)


def check_one_source(command: str, checkpoint: Path | None, results: Path | None) -> None:
    """Exactly one of ``--checkpoint`` and ``--results``, before anything is built."""
    if (checkpoint is None) == (results is None):
        raise RecipeError(f"sdk {command}: give exactly one of --checkpoint FILE or --results FILE.json")


def evaluate_source(engine, checkpoint: Path | None, results: Path | None) -> dict[str, float]:
    """``engine``'s evaluation of the checkpoint or of the saved results."""
    return engine.evaluate_results(results) if results else engine.evaluate(checkpoint)


@click.command("eval")
@recipe_argument
@engine_options
@evaluation_sources
def eval_command(recipe, overrides, work_dir, device, checkpoint, results):
    """Evaluate a checkpoint, or saved detections, on the recipe's test (else val) split."""
    from detsdk.engine import Engine, distributed

    check_one_source("eval", checkpoint, results)
    with errors_name_the_rank():
        engine = Engine.from_recipe(recipe, overrides, work_dir=work_dir, device=device)
        metrics = evaluate_source(engine, checkpoint, results)
        main_process = distributed.is_main_process()
        distributed.destroy()
    if main_process:
        click.echo(json.dumps(metrics, indent=2))
        click.echo(f"written to {engine.work_dir / 'metrics.json'}")


@click.command("predict")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path), metavar="CHECKPOINT|MODEL.onnx")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the drawn images and results.json (videos: drawn video and detections.jsonl).")
@click.option("--score-thr", default=0.3, show_default=True, help="Draw detections scoring at least this.")
@click.option("--slice", "slice_size", type=int, default=None, metavar="PIXELS",
              help="Sliced inference: detect on PIXELS-square windows too, merged by NMS (default: [eval] slice).")
@click.option("--overlap", default=0.2, show_default=True, help="With --slice: fraction neighbouring windows share.")
@click.option("--device", default=None, help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
@debug_option
def predict_command(checkpoint, images, out_dir, score_thr, slice_size, overlap, device):
    """Detect objects in IMAGES (files, folders or videos); draw them and write the results.

    Images: a drawn PNG each and COCO-format results.json. Videos (.mp4,
    .avi, ...): the drawn video (same frames and frame rate) and one line
    per frame in detections.jsonl.
    """
    import cv2

    from detsdk import load_detector
    from detsdk.data.draw import draw_detections
    from detsdk.detections import image_files, read_image
    from detsdk.engine.video import is_video
    from detsdk.recipe.slice_options import SliceSettings
    from detsdk.errors import DataError

    detector = load_detector(checkpoint, device=device)
    slicing = SliceSettings(size=(slice_size, slice_size), overlap=overlap) if slice_size else None
    videos = [p for p in images if p.is_file() and is_video(p)]
    files = image_files([p for p in images if p not in videos])
    if not files and not videos:
        raise DataError(f"no images found in {', '.join(map(str, images))}")
    out_dir.mkdir(parents=True, exist_ok=True)

    def drawn(image, detections):
        return draw_detections(image, detections.boxes, detections.labels, detections.scores,
                               detector.classes, detections.masks, score_thr=score_thr, min_side=0)

    if videos:
        write_video_detections(videos, out_dir, detector, slicing, drawn)
    if not files:
        return
    results, image_entries = [], []
    for image_id, path in enumerate(files, start=1):
        image = read_image(path)
        detections = detector.predict(image, slice=slicing)
        cv2.imwrite(str(out_dir / f"{path.stem}.png"), cv2.cvtColor(drawn(image, detections), cv2.COLOR_RGB2BGR))
        results.extend(detections.to_coco(image_id, detector.cat_ids))
        image_entries.append({"id": image_id, "file_name": str(path), "height": image.shape[0], "width": image.shape[1]})
        kept = int((detections.scores >= score_thr).sum())
        click.echo(f"{path}: {kept} detections >= {score_thr}")
    (out_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (out_dir / "images.json").write_text(json.dumps(image_entries, indent=1), encoding="utf-8")
    click.echo(f"drawn images and results.json (COCO format; image ids in images.json) in {out_dir}")


def write_video_detections(videos, out_dir: Path, detector, slicing, drawn) -> None:
    """Each video drawn into ``out_dir/<name>.mp4``; every frame's detections a line of ``detections.jsonl``."""
    from detsdk.engine.video import annotate_video

    partial = out_dir / ".detections.jsonl.partial"
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(partial.unlink, missing_ok=True)  # no half-written detections.jsonl on failure
        lines = cleanup.enter_context(partial.open("w", encoding="utf-8"))
        for video in videos:
            def record(index, detections, video=video):
                entry = {"video": str(video), "frame": index, "detections": [
                    {"bbox": [float(v) for v in box], "score": float(score), "label": int(label), "class": name}
                    for box, score, label, name in zip(detections.boxes, detections.scores, detections.labels,
                                                       detections.class_names)]}
                lines.write(json.dumps(entry) + "\n")

            frames = annotate_video(video, out_dir, lambda frame: detector.predict(frame, slice=slicing), drawn, record)
            click.echo(f"{video}: {frames} frames drawn into {out_dir / (video.stem + '.mp4')}")
        lines.close()
        partial.replace(out_dir / "detections.jsonl")
    click.echo(f"per-frame detections (x1 y1 x2 y2 boxes) in {out_dir / 'detections.jsonl'}")


COMMANDS = [run_command, eval_command, predict_command]
