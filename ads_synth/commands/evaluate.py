"""``ads-synth evaluate``: Dice, sensitivity and specificity of pseudo labels against manual labels (Table 2), and
AxonDeepSeg's morphometrics of both (fibre count, g-ratio, axon diameter, myelin thickness)."""


def run(args):
    from pathlib import Path

    from ads_synth.segmentation.evaluate import evaluate, format_table, report_targets, summarize, write_reports

    out_dir = Path(args.out) if args.out else Path(args.pred)
    report_targets(out_dir, overwrite=args.overwrite)  # before any work: existing reports need --overwrite
    if not getattr(args, "no_morphometrics", False):
        from ads_synth.data.writers import check_targets
        from ads_synth.segmentation.morphometrics import morphometrics_report_paths

        check_targets(morphometrics_report_paths(out_dir).values(), overwrite=args.overwrite)
    evaluation = evaluate(args.pred, args.truth)
    print(format_table(summarize(evaluation)))
    for (strategy, fold), names in sorted(evaluation.missing.items()):
        print(f"note: {strategy}/{fold}: no prediction for {len(names)} labeled image(s) ({', '.join(names[:3])}"
              f"{', ...' if len(names) > 3 else ''})")
    paths = write_reports(evaluation, out_dir, overwrite=args.overwrite)
    from ads_synth.segmentation.morphometrics import run_morphometrics

    morphometrics = run_morphometrics(args, out_dir, overwrite=args.overwrite)
    for path in [*paths.values(), *morphometrics]:
        print(f"wrote {path}")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="score pseudo labels against manual labels (Dice, sensitivity, specificity)",
        description="Score the predictions under --pred (ads-synth pseudo's pseudo_labels/ folder: one sub-folder "
        "per strategy, fold_<k>/ per fold with --per-fold) against the labeled dataset --truth; print the paper's "
        "Table 2 (mean ± std over folds) and AxonDeepSeg's morphometrics of the ensembles against the manual labels "
        "(fibre count, g-ratio, axon diameter, myelin thickness), and write CSV, Markdown and figures.")
    p.add_argument("--pred", required=True, metavar="DIR", help="prediction folder")
    p.add_argument("--truth", required=True, metavar="DATASET", help="dataset with the manual labels")
    p.add_argument("-o", "--out", default=None, metavar="DIR", help="where to write the reports (default: --pred)")
    p.add_argument("--overwrite", action="store_true", help="replace report files that exist already")
    from ads_synth.segmentation.morphometrics import add_morphometric_arguments

    add_morphometric_arguments(p)
    p.set_defaults(func=run)
