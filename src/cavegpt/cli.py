"""``cavegpt``: the command line. Parses arguments and calls into the packages; nothing else."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from cavegpt.config import PRESET_NAMES, ConfigError, auto_preset_name, build_config
from cavegpt.data.shards import DataError
from cavegpt.infer.hf.export import HFExportError
from cavegpt.infer.hub import HubError
from cavegpt.infer.load import ModelFileError
from cavegpt.infer.standalone import add_sampling_arguments
from cavegpt.report.runs import RunFolderError
from cavegpt.train.checkpoint import CheckpointError
from cavegpt.train.distributed import PeerTimeout, WorldError
from cavegpt.train.guards import NonFiniteError
from cavegpt.train.loggers import LoggerUnavailable
from cavegpt.train.trainer import DeviceError, Trainer

USER_ERRORS = (ConfigError, DataError, DeviceError, CheckpointError, ModelFileError, RunFolderError,
               LoggerUnavailable, WorldError, FileNotFoundError, HFExportError, HubError, PeerTimeout)
EXIT_USER_ERROR = 2
EXIT_STOPPED = 3  # stopped by SIGINT/SIGTERM after saving: resumable
EXIT_NON_FINITE = 4
EXIT_ABORTED = 130

OVERRIDES_HELP = ("settings as key=value, e.g. num_iterations=100 data.seq_len=16384 "
                  "(use --print-config to see every key and its value)")


def add_preset_arguments(parser: argparse.ArgumentParser, print_config: bool = True) -> None:
    parser.add_argument("--preset", default="auto", choices=PRESET_NAMES,
                        help="named configuration (default: auto, which picks by the GPU found)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)
    if print_config:
        parser.add_argument("--print-config", action="store_true", help="print the effective config as JSON and exit")


def config_from(args: argparse.Namespace):
    if args.preset == "auto":
        name, why = auto_preset_name()
        print(why, file=sys.stderr)
        args.preset = name
    return build_config(args.preset, args.overrides)


def relaunch_under_torchrun(nproc: int, argv: list[str]) -> int:
    """``cavegpt train --nproc N ...`` is ``torchrun --standalone --nproc_per_node=N -m cavegpt train ...``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "cavegpt", *argv]
    print("running: " + " ".join(command[1:]), file=sys.stderr)
    return subprocess.run(command).returncode


def cmd_train(args: argparse.Namespace) -> int:
    from cavegpt.train.resume import resume_point

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = sys.argv[1:]
        index = argv.index("--nproc") if "--nproc" in argv else None
        argv = argv[:index] + argv[index + 2:] if index is not None else [a for a in argv if not a.startswith("--nproc=")]
        return relaunch_under_torchrun(args.nproc, argv)
    config = config_from(args)
    if args.print_config:
        print(config.to_json())
        return 0
    resume_from = None
    if config.train.resume:
        config, resume_from = resume_point(config.train.resume, config)
    return run_training(config, resume_from)


def cmd_resume(args: argparse.Namespace) -> int:
    from cavegpt.train.resume import resume_point

    config, resume_from = resume_point(args.run)
    return run_training(config, resume_from)


def run_training(config, resume_from) -> int:
    from cavegpt.report.report import write_report

    trainer = Trainer(config, resume_from=resume_from)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    if not trainer.world.is_main:
        return 0
    if result.stopped:
        print(f"stopped by {result.stopped} at step {result.final_step}; checkpoint {result.checkpoint}. "
              f"Continue with: cavegpt resume {result.run_dir}", file=sys.stderr)
        return EXIT_STOPPED
    report, plot, _ = write_report(result.run_dir)
    print(f"final val_loss {result.final_val_loss:.4f} at step {result.final_step}; "
          f"train time {result.train_time_ms / 1000:.1f}s; run folder {result.run_dir} ({report.name}, {plot.name})")
    return 0


def cmd_speedrun(args: argparse.Namespace) -> int:
    from cavegpt.speedrun import speedrun

    _, result = speedrun(args.preset, args.overrides, args.max_new_tokens)
    if result.stopped:
        print(f"stopped by {result.stopped}; continue with: cavegpt resume {result.run_dir}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cavegpt.report.report import write_report

    report, plot, shown = write_report(args.run, args.compare or [])
    print(shown)
    print(f"wrote {report} and {plot}")
    return 0


def cmd_data_synthetic(args: argparse.Namespace) -> int:
    from cavegpt.data.synthetic import write_synthetic

    files = write_synthetic(args.out, args.train_shards, args.shard_tokens, args.val_tokens, args.mean_doc_len, args.seed)
    print(f"wrote {len(files)} shards to {args.out}: train_glob={args.out}/synthetic_train_*.bin "
          f"val_glob={args.out}/synthetic_val_*.bin")
    return 0


def cmd_data_fineweb(args: argparse.Namespace) -> int:
    from cavegpt.data.fineweb import download_fineweb, shards_needed

    train_shards = args.train_shards
    if train_shards is None:
        config = build_config(args.preset, [])
        tokens = config.planned_tokens()
        train_shards = shards_needed(tokens)
        print(f"preset {args.preset} trains on {tokens / 1e9:.2f}B tokens: {train_shards} train shards")
    report = download_fineweb(args.dir, train_shards, workers=args.workers)
    print(f"{args.dir}: {len(report.fetched)} downloaded, {len(report.skipped)} already complete, "
          f"{len(report.refetched)} re-fetched after a failed check")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from cavegpt.data.prepare import prepare

    report = prepare(args.inputs, args.out, args.val_tokens, args.shard_tokens, args.text_field, args.name, args.seed)
    print(f"{args.out}: train {report.train['tokens']:,} tokens in {report.train['documents']:,} documents "
          f"({len(report.train['shards'])} shards), val {report.val['tokens']:,} tokens in "
          f"{report.val['documents']:,} documents; {report.tokens_per_second:,.0f} tokens/s. "
          f"Train with train_glob='{args.out}/{args.name}_train_*.bin' val_glob='{args.out}/{args.name}_val_*.bin'")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from cavegpt.data.check import check_shard, shard_paths

    failures = 0
    print(f"{'shard':<40} {'tokens':>13} {'documents':>10} {'mean doc':>9}")
    for path in shard_paths(args.target):
        report = check_shard(path)
        if report.error:
            failures += 1
            print(f"FAIL {report.error}")
        else:
            print(f"{path.name:<40} {report.n_tokens:>13,} {report.n_documents:>10,} {report.mean_document_length:>9.1f}")
    if failures:
        print(f"{failures} shard(s) failed the check", file=sys.stderr)
        return 1
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from cavegpt.infer.load import load_model
    from cavegpt.infer.standalone import sample_from_args

    model, _ = load_model(args.model, args.device)
    sample_from_args(model, args)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cavegpt.infer.load import load_model, model_source

    model_path, _ = model_source(args.model)
    model, _ = load_model(model_path, args.device)
    if args.hellaswag:
        from cavegpt.infer.hellaswag import RESULT_FILE, describe, download_hellaswag, load_items, score

        items = load_items(args.hellaswag_file or download_hellaswag())[:args.limit]
        result = score(model, items, args.batch_items)
        print(describe(result))
        if not args.limit:  # a partial score must not stand for the model's in its card
            keep = (model_path if model_path.is_dir() else model_path.parent) / RESULT_FILE  # by the model or its run
            keep.write_text(json.dumps(result, indent=2) + "\n")
            print(f"kept in {keep} (the model card of --push-to-hub shows it)")
        return 0
    from cavegpt.infer.evaluate import evaluate

    loss, bpb = evaluate(model, args.val, args.val_tokens, args.seq_len)
    print(f"{args.model}: val_loss {loss:.4f} nats/token, {bpb:.4f} bits/byte on {args.val_tokens:,} tokens of {args.val}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cavegpt.infer.load import export_model, model_source

    model_path, run_dir = model_source(args.model)
    hf = (args.format or ("hf" if args.push_to_hub else "cavegpt")) == "hf"
    if hf:
        from cavegpt.infer.hf.export import export_hf

        out = export_hf(model_path, args.out)
        print(f"wrote {out}: transformers loads it with AutoModelForCausalLM.from_pretrained({str(out)!r}, "
              "trust_remote_code=True)")
    else:
        out = export_model(model_path, args.out)
        print(f"wrote {out}/model.safetensors and {out}/config.json; sample with: "
              f"python -m cavegpt.infer.standalone {out}")
    if args.push_to_hub:
        from cavegpt.infer.hub import push_to_hub

        print(f"published: {push_to_hub(out, args.push_to_hub, args.private, run_dir)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if not args.synthetic:
        return run_bench(args)
    from cavegpt.data.synthetic import bench_overrides

    with bench_overrides() as synthetic_data:
        args.overrides = [*synthetic_data, *args.overrides]
        return run_bench(args)


def run_bench(args: argparse.Namespace) -> int:
    from cavegpt.report.bench import bench_window
    from cavegpt.report.mfu import H100_SXM_DATASHEET_TFLOPS, measure_matmul_peak_tflops

    config = config_from(args)
    if args.print_config:
        print(config.to_json())
        return 0
    if not torch.cuda.is_available():
        raise DeviceError("cavegpt bench measures a CUDA GPU and PyTorch sees none")
    if args.memory_limit_gib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(args.memory_limit_gib * 2**30 / total,
                                                   int(os.environ.get("LOCAL_RANK", "0")))
    trainer = Trainer(config, echo=False)
    try:
        compile_seconds = trainer.warmup()
        peak_tflops = measure_matmul_peak_tflops()
        windows = args.window or [config.train.window_start, config.model.window]
        results = [bench_window(trainer, trainer.window_at(0) if w == config.train.window_start else w, args.steps,
                                at_step=args.at_step) for w in windows]
    finally:
        trainer.close()
    if not trainer.world.is_main:
        return 0
    gpus = trainer.world.size  # MFU is per GPU: the tokens/s of all of them over N peaks
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | preset {args.preset} | "
          f"{gpus} process(es) | {trainer.step_tokens(args.at_step):,} tokens/step "
          f"({trainer.micro_batches_at(args.at_step)} × {config.data.batch_size} × {config.data.seq_len}) | "
          f"{trainer.kernels}")
    print(f"compile + warm-up: {compile_seconds:.1f}s | measured bf16 matmul peak: {peak_tflops:.0f} TFLOP/s "
          f"| datasheet (H100 SXM): {H100_SXM_DATASHEET_TFLOPS:.0f}")
    for r in results:
        print(f"window {r.window}: FLOPs/token = {r.flops.describe()}")
    print(f"{'window':>6} {'steps':>5} {'s/step':>7} {'tokens/s':>10} {'MFU(meas)':>9} {'MFU(sheet)':>10} {'peak GiB':>8}")
    for r in results:
        print(f"{r.window:>6} {r.steps:>5} {r.seconds / r.steps:>7.3f} {r.tokens_per_second:>10,.0f} "
              f"{r.mfu(peak_tflops * gpus):>9.1%} {r.mfu(H100_SXM_DATASHEET_TFLOPS * gpus):>10.1%} "
              f"{r.peak_memory_gib:>8.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cavegpt", description="Train GPT-2 124M to 3.28 val loss on one GPU.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model; logs and checkpoints go to logs/<run_id>/",
                                description="Train with a preset plus key=value overrides. Writes config.json, "
                                            "log.txt and the final checkpoint to logs/<run_id>/.")
    add_preset_arguments(train)
    train.add_argument("--nproc", type=int, default=1,
                       help="processes (GPUs) to train on: relaunches under torchrun --nproc_per_node=N. "
                            "The tokens per step stay those of the preset; N must divide grad_accum")
    train.set_defaults(func=cmd_train)

    speedrun = commands.add_parser(
        "speedrun", help="the whole thing: FineWeb (downloaded if missing) → train to 3.28 → report → samples",
        description="Download FineWeb when data/fineweb10B is empty, train the preset for this GPU until the val "
                    "loss reaches 3.28, write report.md and loss.png, then sample the canned prompts from the final "
                    "model into samples.txt. With no CUDA GPU (or no way to get FineWeb) it runs the demo instead: "
                    "the tiny preset on the sample corpus shipped with cavegpt, and says so.")
    add_preset_arguments(speedrun, print_config=False)
    speedrun.add_argument("--max-new-tokens", type=int, default=64, help="tokens per sample at the end (default 64)")
    speedrun.set_defaults(func=cmd_speedrun)

    report = commands.add_parser(
        "report", help="leaderboard row (report.md) and loss plot (loss.png) of a run; --compare runs",
        description="Write report.md (the seed's leaderboard row: GPU and VRAM, time to target with and without "
                    "validation, tokens, final val loss @ step, throughput, command, commit, torch version) and "
                    "loss.png (train and val loss against steps and training minutes, target and cooldown marked) "
                    "into the run folder. With --compare, also compare.png overlaying the runs and a side-by-side "
                    "table.")
    report.add_argument("run", help="the run folder, e.g. logs/20261124-101500-ab12cd")
    report.add_argument("--compare", nargs="+", metavar="RUN", help="other run folders to put beside it")
    report.set_defaults(func=cmd_report)

    resume = commands.add_parser(
        "resume", help="continue a stopped run exactly where its newest checkpoint left it",
        description="Continue logs/<run_id> from its newest usable checkpoint: weights, the four optimizers, "
                    "step, schedules, data position and random state. log.txt and metrics.jsonl continue.")
    resume.add_argument("run", help="the run folder, e.g. logs/20261124-101500-ab12cd")
    resume.set_defaults(func=cmd_resume)

    data = commands.add_parser("data", help="make or fetch token shards")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synthetic = data_commands.add_parser(
        "synthetic", help="random tokens with FineWeb-like document lengths (for speed tests)",
        description="Write synthetic_val_000000.bin and synthetic_train_00000K.bin: random GPT-2 token ids "
                    "in documents of log-normal length (mean --mean-doc-len), each opened by EOT 50256.")
    synthetic.add_argument("--out", required=True, help="folder to write the shards into")
    synthetic.add_argument("--train-shards", type=int, default=2, help="number of train shards (default 2)")
    synthetic.add_argument("--shard-tokens", type=int, default=10_000_000, help="tokens per train shard")
    synthetic.add_argument("--val-tokens", type=int, default=10_485_761,
                           help="tokens in the val shard (default: the seed's val_tokens + 1)")
    synthetic.add_argument("--mean-doc-len", type=float, default=1000.0, help="mean document length in tokens")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed")
    synthetic.set_defaults(func=cmd_data_synthetic)

    fineweb = data_commands.add_parser(
        "fineweb", help="download the speedrun's FineWeb shards (kjj0/fineweb10B-gpt2) from the HF hub",
        description="Download fineweb_val_000000.bin and fineweb_train_00000K.bin (K = 1..N, 100M tokens each) "
                    "with huggingface_hub (HF_ENDPOINT, HF_HUB_OFFLINE and HF_TOKEN apply). Complete shards are "
                    "checked and skipped; dropped connections resume; a shard failing its check is fetched again.")
    fineweb.add_argument("--train-shards", type=int, help="train shards to fetch (default: enough for --preset)")
    fineweb.add_argument("--preset", default="seed", choices=[p for p in PRESET_NAMES if p != "auto"],
                         help="size the default --train-shards for this preset's tokens (default: seed → 10)")
    fineweb.add_argument("--dir", default="data/fineweb10B", help="where the shards go (default: data/fineweb10B)")
    fineweb.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    fineweb.set_defaults(func=cmd_data_fineweb)

    prepare = data_commands.add_parser(
        "prepare", help="tokenize your own text (txt, folders, jsonl, parquet) into train/val shards",
        description="Tokenize text files (one document each), folders of them, .jsonl (one document per line) "
                    "and .parquet files with the GPT-2 BPE on all cores, EOT 50256 before every document, into "
                    "train/val shards in the FineWeb format plus a dataset.json describing them. The val split "
                    "takes whole documents picked with a fixed seed; the same input gives the same shards.")
    prepare.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
    prepare.add_argument("--out", required=True, help="folder for the shards and dataset.json")
    prepare.add_argument("--val-tokens", type=int, default=10_485_760, help="tokens in the val split (default: the seed's)")
    prepare.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard (default 100M)")
    prepare.add_argument("--text-field", default="text", help="jsonl field / parquet column holding the text")
    prepare.add_argument("--name", default="text", help="shard name prefix: NAME_train_000001.bin (default text)")
    prepare.add_argument("--seed", type=int, default=1234, help="seed of the val split")
    prepare.set_defaults(func=cmd_data_prepare)

    check = data_commands.add_parser(
        "check", help="verify shards: header, size, token range; count documents",
        description="For each shard: magic, version, size = 1024 + 2 * tokens, every token < 50257, number of "
                    "documents and mean document length. Exits 1 if any shard fails, naming file and byte offset.")
    check.add_argument("target", help="a folder of .bin shards or a glob")
    check.set_defaults(func=cmd_data_check)

    sample = commands.add_parser(
        "sample", help="generate text from a checkpoint or exported model (canned prompts if none given)",
        description="Stream completions to stdout. With no prompt, runs the canned prompts at temperatures "
                    "0 (greedy), 0.7 and 1.0. Stops at EOT or --max-new-tokens. Uses a KV cache.")
    sample.add_argument("model", help="checkpoint_step*.pt or a folder written by cavegpt export")
    add_sampling_arguments(sample)
    sample.set_defaults(func=cmd_sample)

    evaluate = commands.add_parser("eval", help="val loss and bits per byte, or HellaSwag, of a model",
                                   description="Mean cross-entropy (nats/token) and bits per UTF-8 byte over the "
                                               "first --val-tokens tokens of the val shards; with --hellaswag, "
                                               "HellaSwag's validation set (acc and acc_norm, completion style, "
                                               "beside OpenAI's GPT-2 124M).")
    evaluate.add_argument("model", help="a run folder, checkpoint_step*.pt or an exported folder")
    evaluate.add_argument("--val", default="data/fineweb10B/fineweb_val_*.bin", help="val shards (glob)")
    evaluate.add_argument("--val-tokens", type=int, default=10_485_760, help="tokens to score (default: the seed's)")
    evaluate.add_argument("--seq-len", type=int, default=32768, help="tokens per forward pass (default 32768)")
    evaluate.add_argument("--hellaswag", action="store_true",
                          help="score HellaSwag's 10,042 validation items (downloaded from the hub once, into "
                               "data/hellaswag) instead of the val loss; the score is kept for the model card")
    evaluate.add_argument("--limit", type=int, help="HellaSwag: score only the first N items (not kept)")
    evaluate.add_argument("--hellaswag-file", help="HellaSwag: a local validation parquet or hellaswag_val.jsonl")
    evaluate.add_argument("--batch-items", type=int, default=8, help="HellaSwag: items per forward pass (default 8)")
    evaluate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    evaluate.set_defaults(func=cmd_eval)

    export = commands.add_parser("export", help="write the model for use elsewhere; optionally publish it",
                                 description="--format cavegpt (default): model.safetensors + config.json, which "
                                             "sample, eval and the standalone entry (python -m "
                                             "cavegpt.infer.standalone; needs only torch, tiktoken and safetensors) "
                                             "load. --format hf: a folder Hugging Face transformers loads with "
                                             "trust_remote_code=True and no cavegpt installed (pip install "
                                             "\"cavegpt[hf]\"). --push-to-hub publishes the folder with a model "
                                             "card made from the run (needs HF_TOKEN).")
    export.add_argument("model", help="a run folder (its newest checkpoint), checkpoint_step*.pt or an exported folder")
    export.add_argument("--out", required=True, help="folder to write")
    export.add_argument("--format", choices=("cavegpt", "hf"),
                        help="cavegpt (default) or hf (Hugging Face transformers; the default with --push-to-hub)")
    export.add_argument("--push-to-hub", metavar="USER/NAME", help="upload the folder to this hub model repository")
    export.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    export.set_defaults(func=cmd_export)

    bench = commands.add_parser("bench", help="tokens/s, MFU and peak memory of a preset on this GPU",
                                description="Compile a preset, time optimizer steps at fixed attention windows "
                                            "and print compile time, tokens/s, MFU (with its terms) and peak memory.")
    add_preset_arguments(bench)
    bench.add_argument("--steps", type=int, default=20, help="timed optimizer steps per window (default 20)")
    bench.add_argument("--window", type=int, action="append",
                       help="attention window(s) to time (default: the first and the final window)")
    bench.add_argument("--at-step", type=int, default=0,
                       help="time steps as step N of the schedule, for its batch size under a batch ramp "
                            "(e.g. the record preset's last stage: --at-step 1900)")
    bench.add_argument("--synthetic", action="store_true", help="bench on synthetic shards made in a temp folder")
    bench.add_argument("--memory-limit-gib", type=float, help="cap usable GPU memory, e.g. 22 to check a 24 GB card")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"cavegpt: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except NonFiniteError as e:
        print(f"cavegpt: stopped: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    except torch.OutOfMemoryError:
        print("cavegpt: error: the GPU ran out of memory. Take a preset of the same recipe in smaller micro-batches "
              "(the README's presets table gives each one's measured peak): 4090, 16gb or 12gb for the seed's; "
              "record-24gb or record-16gb for record's. Or halve data.seq_len and double train.grad_accum and each "
              "batch_ramp entry (same tokens per step), e.g. seq_len=16384 grad_accum=32 for the seed's.",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cavegpt: aborted", file=sys.stderr)
        return EXIT_ABORTED
