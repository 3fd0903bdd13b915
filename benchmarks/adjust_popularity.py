r"""The popularity adjustment (``pyg-mmssl train --adjust-popularity``) of
finished runs: for each run folder, its ``best.pt`` gets what the trainer does
after training with the option, :meth:`Trainer.adjust_popularity` (the weight
of :data:`POPULARITY_WEIGHTS` with the best validation Recall@20), and is then
evaluated on validation and test, next to its unadjusted figures. Training
itself does not depend on the option, so this is what the same runs would
report with it.

    python benchmarks/adjust_popularity.py RUN_DIR [RUN_DIR ...] \
        [--json FILE] [--threads 1] [--root DATASET_FOLDER]

Prints one Markdown row per run; nothing is written into the run folders.
"""
import argparse
import os.path as osp

import torch


def adjust(run: str, root=None) -> dict:
    from pyg_mmssl.checkpoint import load_checkpoint
    from pyg_mmssl.train import TrainConfig, Trainer

    trained = load_checkpoint(osp.join(run, 'best.pt'), root, device='cpu')
    saved = trained.checkpoint['config']
    config = TrainConfig(**{**saved, 'device': 'cpu', 'quiet': True})
    trainer = Trainer(trained.model, trained.data, config)
    trained.model.popularity_weight.fill_(0)
    plain = {s: trainer.evaluate(s) for s in ('val', 'test')}
    weight, curve = trainer.adjust_popularity()
    adjusted = {s: trainer.evaluate(s) for s in ('val', 'test')}
    return {'run': run, 'model': trained.checkpoint['meta'].get('model'),
            'popularity_weight': weight,
            'curve': curve, 'plain': plain, 'adjusted': adjusted}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='run folders with best.pt')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--root', default=None,
                        help="the dataset's folder, where it moved since")
    parser.add_argument('--json', default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print('| run | w | val R@20 plain / adjusted | test R@20 plain / adjusted '
          '| test N@20 plain / adjusted |\n' + '|---' * 5 + '|')
    for run in args.runs:
        r = adjust(run, args.root)
        rows.append(r)
        p, a = r['plain'], r['adjusted']
        print(f"| {run} | {r['popularity_weight']:g} "
              f"| {p['val']['recall@20']:.4f} / {a['val']['recall@20']:.4f} "
              f"| {p['test']['recall@20']:.4f} / {a['test']['recall@20']:.4f} "
              f"| {p['test']['ndcg@20']:.4f} / {a['test']['ndcg@20']:.4f} |",
              flush=True)
    if args.json:
        from pyg_mmssl.files import atomic_write_json
        atomic_write_json(rows, args.json)
    return rows


if __name__ == '__main__':
    main()
