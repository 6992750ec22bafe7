"""``seqae encode``, ``reconstruct``, ``score`` and ``decode``: a saved model applied to a
file; the data read by `seqae.tables.read_data`, the results shaped by `seqae.tables`."""

from __future__ import annotations

import argparse

from .common import (
    UsageError,
    check_out,
    data_for_model,
    in_memory,
    load,
    located,
    log,
    streamed,
)

__all__ = ["cmd_encode", "cmd_reconstruct", "cmd_score", "cmd_impute", "cmd_decode"]


def cmd_encode(args: argparse.Namespace) -> int:
    from ..io import write_table
    from ..stream import write_outputs
    from ..tables import embeddings_table, ids_of

    ae, settings = load(args.model)
    check_out(args.out, args.data, args.model, overwrite=args.overwrite)
    data, _, labels, spec = data_for_model(args, ae, settings)
    if streamed(data, args.out):
        write_outputs(ae, data, args.out, "encode")
        log.info("wrote %d embeddings of size %d to %s", len(data), ae.latent_dim_, args.out)
        return 0
    Z = located(ae.encode, data)
    write_table(embeddings_table(Z, ids_of(data), spec.id_col, labels, spec.label_col),
                args.out)
    log.info("wrote %d embeddings of size %d to %s", len(data), Z.shape[1], args.out)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from ..io import write_table
    from ..tables import Texts, reconstructions_table

    ae, settings = load(args.model)
    check_out(args.out, args.data, args.model, overwrite=args.overwrite)
    data, times, _, spec = data_for_model(args, ae, settings)
    if streamed(data, args.out):  # a folder: as large as the data, a window at a time
        from ..stream import write_outputs

        write_outputs(ae, data, args.out, "reconstruct")
        log.info("wrote reconstructions of %d sequences (%d steps) to %s", len(data),
                 int(data.lengths.sum()), args.out)
        return 0
    rec = located(ae.reconstruct, data)
    write_table(reconstructions_table(data, rec, times, spec.id_col, spec.time_col or "t"),
                args.out)
    if isinstance(data, Texts):
        log.info("wrote reconstructions of %d texts to %s", len(data), args.out)
    else:
        log.info("wrote reconstructions of %d sequences (%d steps) to %s", len(data),
                 data.n_steps, args.out)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..io import write_table
    from ..stream import write_outputs
    from ..tables import ids_of, lengths_of, scores_table

    if args.contamination is not None and not 0 <= args.contamination < 1:
        raise UsageError(f"--contamination must be in [0, 1), got {args.contamination}")
    ae, settings = load(args.model)
    check_out(args.out, args.data, args.model, overwrite=args.overwrite)
    if ae.threshold_ is None:
        raise UsageError(f"{args.model} was written during fit, before its threshold (no "
                         "training scores yet): score with a model folder whose fit ended")
    data, times, labels, spec = data_for_model(args, ae, settings)
    threshold = ae.threshold_ if args.contamination is None else ae.threshold_for(
        args.contamination)
    if args.per_step:
        return _step_scores(args, ae, data, times, spec)
    if streamed(data, args.out):
        import pyarrow.parquet as pq

        write_outputs(ae, data, args.out, "score", threshold)
        flagged = int(pq.read_table(args.out, columns=["anomaly"]).column(0).to_numpy().sum())
    else:
        scores = located(ae.score, data)
        write_table(scores_table(scores, threshold, ids_of(data), lengths_of(data),
                                 spec.id_col, labels, spec.label_col), args.out)
        flagged = int((scores > threshold).sum())
    log.info("scored %d sequences; %d above the threshold %.4g; written to %s", len(data),
             flagged, threshold, args.out)
    return 0


def _step_scores(args: argparse.Namespace, ae, data, times, spec) -> int:
    """``score --per-step``: the long table of each step's error."""
    from ..io import write_table
    from ..tables import Texts, reconstructions_table

    data, _ = in_memory(data)
    if isinstance(data, Texts):
        raise UsageError("--per-step scores sequences of values or tokens, not texts")
    steps = located(lambda d: ae.score(d, per_step=True), data)
    write_table(reconstructions_table(data, steps, times, spec.id_col, spec.time_col or "t"),
                args.out)
    log.info("scored %d steps of %d sequences; written to %s", steps.n_steps, len(data),
             args.out)
    return 0


def cmd_impute(args: argparse.Namespace) -> int:
    from ..io import write_table
    from ..tables import Texts, reconstructions_table

    ae, settings = load(args.model)
    if ae.missing != "mask":
        raise UsageError(f"{args.model} was trained with --missing error: it refuses missing "
                         "values and cannot fill them in; train with --missing mask")
    check_out(args.out, args.data, args.model, overwrite=args.overwrite)
    data, times, _, spec = data_for_model(args, ae, settings)
    data, _ = in_memory(data)
    assert not isinstance(data, Texts)  # a text model has missing='error'
    filled = int(data.n_steps * data.n_features - data.observed().sum())
    out = located(ae.impute, data)
    write_table(reconstructions_table(data, out, times, spec.id_col, spec.time_col or "t"),
                args.out)
    log.info("filled %d missing values in %d sequences; written to %s", filled, len(data),
             args.out)
    return 0


def _embeddings(table, path: str, latent_dim: int):
    """The ``z0..zK`` columns of an embeddings table as a float32 array, checked."""
    import re

    import numpy as np

    from ..errors import DataFileError, require_columns

    found = {int(m.group(1)): c for c in table.column_names if (m := re.fullmatch(r"z(\d+)", c))}
    if not found:
        require_columns(table.column_names, [("embedding", "z0")], path,
                        note=" (columns z0..zK, as `seqae encode` writes them)")
    missing = [k for k in range(max(found) + 1) if k not in found]
    if missing:
        raise DataFileError(f"{path}: embedding column z{missing[0]} is missing")
    cols = [found[k] for k in range(len(found))]
    if len(cols) != latent_dim:
        raise DataFileError(f"{path}: {len(cols)} embedding columns (z0..z{len(cols) - 1}); "
                            f"the model's latent has {latent_dim}")
    Z = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols])
    Z = Z.astype(np.float32)
    bad = np.argwhere(~np.isfinite(Z))
    if len(bad):
        raise DataFileError(f"{path}, row {bad[0][0]}, column {cols[bad[0][1]]}: "
                            f"not a finite number ({Z[tuple(bad[0])]})")
    return Z


def _lengths(table, args: argparse.Namespace):
    """The lengths to decode at: ``--length``, a column's, or None (the model's)."""
    import numpy as np

    from ..errors import DataFileError, require_columns

    if args.length_col is None:
        if args.length is not None and args.length < 1:
            raise UsageError(f"--length must be >= 1, got {args.length}")
        return args.length
    require_columns(table.column_names, [("length", args.length_col)], args.embeddings)
    raw = table.column(args.length_col).to_numpy(zero_copy_only=False)
    lengths = np.asarray(raw, dtype=np.float64)
    wrong = np.flatnonzero(~np.isfinite(lengths) | (lengths != np.round(lengths))
                           | (lengths < 1))
    if len(wrong):
        raise DataFileError(f"{args.embeddings}, row {wrong[0]}, column {args.length_col!r}: "
                            f"{raw[wrong[0]]} is not a length (a whole number >= 1)")
    return lengths.astype(np.int64)


def cmd_decode(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import DataFileError, SequenceDataError, require_columns
    from ..io import read_table, write_table
    from ..tables import check_names, decodings_table

    ae, settings = load(args.model)
    check_out(args.out, args.embeddings, args.model, overwrite=args.overwrite)
    id_col = args.id_col or settings.get("id_col") or "id"
    check_names(id_col, time_col=settings.get("time_col") or "t", error=UsageError)
    table = read_table(args.embeddings, text=(id_col,))
    Z = _embeddings(table, args.embeddings, ae.latent_dim_)
    lengths = _lengths(table, args)
    if args.id_col is not None:
        require_columns(table.column_names, [("id", id_col)], args.embeddings)
    ids = (table.column(id_col).to_numpy(zero_copy_only=False)
           if id_col in table.column_names else np.arange(len(Z)))
    try:
        out = ae.decode(Z, lengths=lengths, max_length=args.max_length)
    except SequenceDataError as e:
        raise DataFileError(f"{args.embeddings}: {e}") from None
    decoded = ae.vocab_.decode(out) if ae.vocab_ is not None else out
    write_table(decodings_table(decoded, ids, id_col, settings.get("time_col") or "t"),
                args.out)
    how = ("at length " + str(lengths) if np.isscalar(lengths) else
           f"at the lengths of column {args.length_col!r}" if lengths is not None else
           "at the lengths the model chose")
    log.info("decoded %d vectors %s; written to %s", len(Z), how, args.out)
    return 0
