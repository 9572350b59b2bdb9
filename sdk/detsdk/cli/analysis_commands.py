"""``sdk analyze`` (confusion matrix, PR curves, error breakdown, worst images) and ``sdk info`` (parameters, FLOPs)."""

from __future__ import annotations

from pathlib import Path

import click

from detsdk.cli.run_commands import check_one_source, engine_options, evaluate_source, evaluation_sources, recipe_argument


@click.command("analyze")
@recipe_argument
@engine_options
@evaluation_sources
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the plots and their JSON.")
@click.option("--score-thr", default=0.3, show_default=True, help="Confusion matrix and worst images: detections kept.")
@click.option("--iou-thr", default=0.5, show_default=True, help="Confusion matrix and worst images: IoU of a match.")
@click.option("--worst", default=8, show_default=True, help="How many of the images with the most errors to draw.")
def analyze_command(recipe, overrides, work_dir, device, checkpoint, results, out_dir, score_thr, iou_thr, worst):
    """Evaluate on the test (else val) split and write where the errors are into OUT.

    Confusion matrix (with background), PR curves at IoU 0.5 and 0.75, AP per
    class, the COCO error breakdown (C75, C50, Loc, Sim, Oth, BG, FN) and
    the images with the most false positives and negatives, drawn.
    """
    from detsdk.analysis.report import analyze_evaluation
    from detsdk.engine import Engine

    check_one_source("analyze", checkpoint, results)
    engine = Engine.from_recipe(recipe, overrides, work_dir=work_dir, device=device)
    metrics = evaluate_source(engine, checkpoint, results)
    report = analyze_evaluation(engine.last_metric, out_dir, iou_thr=iou_thr, score_thr=score_thr, worst=worst)
    for note in report.notes:
        click.echo(note)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in list(metrics.items())[:3])
    click.echo(f"{shown}\n{len(report.files)} files in {out_dir}")


@click.command("info")
@recipe_argument
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key (repeatable).")
@click.option("--shape", nargs=2, type=int, default=None, metavar="H W",
              help="Input size for the FLOPs (default: the inference pipeline's resize scale, else 800 1333).")
def info_command(recipe, overrides, shape):
    """Parameters (total, trainable, per module) and FLOPs / multiply-adds of RECIPE's model."""
    from detsdk.analysis.complexity import model_complexity
    from detsdk.engine.model_info import default_shape, recipe_model

    model, source = recipe_model(recipe, overrides)
    height, width = shape or default_shape(recipe, overrides)
    complexity = model_complexity(model, (height, width))
    click.echo(f"model: {model.__class__.__name__} ({source})")
    click.echo(f"parameters: {complexity.parameters:,} total, {complexity.trainable:,} trainable")
    for name, count in complexity.modules.items():
        click.echo(f"  {name:<12} {count:>14,}")
    click.echo(f"input: 1x3x{height}x{width}")
    click.echo(f"FLOPs: {complexity.flops / 1e9:.2f} G  (torch.utils.flop_counter; a multiply-add counts 2)")
    click.echo(f"multiply-adds: {complexity.macs / 1e9:.2f} G  (what MMDetection's get_flops and fvcore call FLOPs)")


COMMANDS = [analyze_command, info_command]
