r"""Time of the top-k search behind MMSSL's learned-graph refresh: the plain
chunked full ranking (:func:`pyg_mmssl.ranking.topk_chunks`) against the
exact norm-pruned search the model uses (:func:`pyg_mmssl.ranking.
pruned_topk`), for each modality, on the modality embeddings of a freshly
initialised preset model and of each ``--checkpoint`` (a trained model; in
eval mode, no dropout). Also reports how many users get the same top-k
scores, and the same items, from both (items may differ only where scores
tie).

    python benchmarks/refresh.py --dataset tiktok
    python benchmarks/refresh.py --checkpoint results/tiktok/runs/mmssl-seed0/best.pt

Prints a Markdown table; ``--json FILE`` also writes it.
"""
import argparse
import time


def best_of(fn, repeats: int, device) -> float:
    r"""Fastest of ``repeats`` calls of ``fn``, in ms (the caller has run it
    once already, as a warm-up)."""
    import torch

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def measure(name, model, repeats: int):
    import torch

    from pyg_mmssl.ranking import pruned_topk, topk_chunks

    model.eval()
    with torch.no_grad():
        out = model()
    exclude, k = model.train_csr(), model.k
    rows = []
    for m in model.modalities:
        p_u, p_i = out.user_modal[m], out.item_modal[m]

        def full():
            return [top for _, top in topk_chunks(p_u, p_i, k, None, exclude,
                                                  model.chunk_size)]

        def pruned():
            return pruned_topk(p_u, p_i, k, None, exclude, model.chunk_size)

        tops = full()  # also the warm-up of both for best_of
        ref = torch.cat([top.values for top in tops])
        ref_items = torch.cat([top.indices for top in tops]).sort(1).values
        values, items = pruned()
        same = torch.isclose(values, ref, rtol=1e-5, atol=0).all(1)
        same_items = (items.sort(1).values == ref_items).all(1)
        rows.append({
            'embeddings': name, 'modality': m, 'users': p_u.size(0),
            'items': p_i.size(0), 'k': k,
            'full_ms': best_of(full, repeats, p_u.device),
            'pruned_ms': best_of(pruned, repeats, p_u.device),
            'same_scores': same.float().mean().item(),
            'same_items': same_items.float().mean().item(),
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='tiktok')
    parser.add_argument('--root', default=None)
    parser.add_argument('--checkpoint', nargs='*', default=[])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', default=None)
    args = parser.parse_args(argv)

    import torch

    from common import preset_trainer, save_json
    from pyg_mmssl.checkpoint import load_checkpoint
    from pyg_mmssl.datasets import load_dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(args.dataset, args.root)
    model = preset_trainer('mmssl:lowrank', data, args.dataset,
                           args.device).model
    rows = measure('initial', model, args.repeats)
    for path in args.checkpoint:
        _, _, model = load_checkpoint(path, args.root, args.device)
        rows += measure(path, model, args.repeats)

    print('| embeddings | modality | full top-k ms | pruned ms | speed-up | '
          'users with equal scores | users with the same items |\n'
          '|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['embeddings']} | {r['modality']} | {r['full_ms']:.0f} | "
              f"{r['pruned_ms']:.0f} | {r['full_ms'] / r['pruned_ms']:.1f}x"
              f" | {100 * r['same_scores']:.2f}% | "
              f"{100 * r['same_items']:.2f}% |")
    save_json(args, rows)
    return rows


if __name__ == '__main__':
    main()
