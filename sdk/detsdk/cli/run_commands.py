"""``sdk run``, ``sdk eval`` and ``sdk predict``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from detsdk.cli.options import debug_option

recipe_argument = click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))


def engine_options(function):
    """``--set``, ``--work-dir`` and ``--device``, shared by the commands that build an engine."""
    function = click.option("--device", default=None, help="auto (default), cpu, cuda or cuda:N.")(function)
    function = click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Where the run writes (default: runtime.work_dir, else runs/<recipe>).")(function)
    function = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                            help="Override a recipe key, e.g. --set train.epochs=12 (repeatable).")(function)
    return debug_option(function)


@click.command("run")
@recipe_argument
@engine_options
@click.option("--resume", is_flag=True, help="Continue from <work_dir>/last.pt.")
def run_command(recipe, overrides, work_dir, device, resume):
    """Train the detector RECIPE describes, then evaluate it."""
    from detsdk.engine import Engine

    engine = Engine.from_recipe(recipe, overrides, work_dir=work_dir, device=device)
    metrics = engine.fit(resume=resume)
    click.echo(f"work dir: {engine.work_dir}")
    if metrics:
        click.echo(f"metrics: {engine.work_dir / 'metrics.json'}")
    click.echo(f"checkpoints: {engine.work_dir / 'best.pt'}, {engine.work_dir / 'last.pt'}")
    click.echo(f"plots: {engine.work_dir / 'plots'}")


@click.command("eval")
@recipe_argument
@engine_options
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), help="Weights to evaluate.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Saved COCO-format detections to score (no model, no images).")
def eval_command(recipe, overrides, work_dir, device, checkpoint, results):
    """Evaluate a checkpoint, or saved detections, on the recipe's test (else val) split."""
    from detsdk.engine import Engine
    from detsdk.errors import RecipeError

    if (checkpoint is None) == (results is None):
        raise RecipeError("sdk eval: give exactly one of --checkpoint FILE or --results FILE.json")
    engine = Engine.from_recipe(recipe, overrides, work_dir=work_dir, device=device)
    metrics = engine.evaluate_results(results) if results else engine.evaluate(checkpoint)
    click.echo(json.dumps(metrics, indent=2))
    click.echo(f"written to {engine.work_dir / 'metrics.json'}")


@click.command("predict")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the drawn images and results.json.")
@click.option("--score-thr", default=0.3, show_default=True, help="Draw detections scoring at least this.")
@click.option("--device", default=None, help="auto (default), cpu, cuda or cuda:N.")
@debug_option
def predict_command(checkpoint, images, out_dir, score_thr, device):
    """Detect objects in IMAGES (files or folders); draw them and write COCO-format results."""
    import cv2

    from detsdk.engine.plots import draw_detections
    from detsdk.engine.predictor import image_files, load_detector, read_image
    from detsdk.errors import DataError

    detector = load_detector(checkpoint, device=device)
    files = image_files(images)
    if not files:
        raise DataError(f"no images found in {', '.join(map(str, images))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results, image_entries = [], []
    for image_id, path in enumerate(files, start=1):
        image = read_image(path)
        detections = detector.predict(image)
        drawn = draw_detections(image, detections.boxes, detections.labels, detections.scores,
                                detector.classes, detections.masks, score_thr=score_thr, min_side=0)
        cv2.imwrite(str(out_dir / f"{path.stem}.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        results.extend(detections.to_coco(image_id, detector.cat_ids))
        image_entries.append({"id": image_id, "file_name": str(path), "height": image.shape[0], "width": image.shape[1]})
        kept = int((detections.scores >= score_thr).sum())
        click.echo(f"{path}: {kept} detections >= {score_thr}")
    (out_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (out_dir / "images.json").write_text(json.dumps(image_entries, indent=1), encoding="utf-8")
    click.echo(f"drawn images and results.json (COCO format; image ids in images.json) in {out_dir}")


COMMANDS = [run_command, eval_command, predict_command]
