#!/usr/bin/env bash
# Fuzzes arapack's parsers with libFuzzer + AddressSanitizer.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 30 s, every target)
# Targets: safetensors (header parser), zip (zip reader), pickle (restricted pickle machine), dcp (DCP
# .metadata reader), json (config / JSON parser), tokenizer (tokenizer.json checks), torch (whole
# torch.save reader), tar (release-archive tar parser), signature (OpenSSF model-signing signature parser), config
# (any JSON assembled as a model config, sized, written in both forms, GPT-2 round trip checked), deep-pickle
# (pickles expanded from (opcode, count) programs, run on a 512 KiB stack: thousands deep from a few bytes), bundle (the
# structural verifier on the example bundle with one JSON file replaced by the input), plan (release plans, printed back),
# traininglog (a run's metrics drawn as the plots), release (a release set's release.json, checked as verify checks it). Seeds come from Fixtures/ (copied to a work folder
# under .build-fuzz/). A crash, leak or timeout stops the run: libFuzzer writes the input to
# .build-fuzz/findings/<target>/ and the script exits 1 (make it a fixture and a test, then fix it).
# ARAPACK_FUZZ_SEED fixes libFuzzer's seed (CI sets it, so each CI run explores the same inputs first).
# Replay any input without the fuzzer: swift build --product arapack-fuzz && .build/debug/arapack-fuzz TARGET FILE...
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors zip pickle dcp json tokenizer torch tar signature config deep-pickle bundle gguf tokens plan traininglog release)

swift build -c release --product arapack-fuzz --build-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -D -Xswiftc FUZZING 2>&1 | grep -v "warning: Cannot export local symbol" || true
fuzzer=.build-fuzz/release/arapack-fuzz
[ -x "$fuzzer" ] || { echo "fuzz build failed" >&2; exit 2; }

seed() {  # the fixture files that exercise a target
    case "$1" in
        safetensors) ls Fixtures/safetensors/valid/*.safetensors Fixtures/safetensors/hostile/* ;;
        # Checkpoint-shaped targets: the small seeds (Fixtures/fuzz/make_seeds.py) and the small hostile
        # files; whole-model fixtures (100-300 KB) would slow them to a few hundred inputs a second.
        zip|torch) ls Fixtures/fuzz/seeds/torch/*; find Fixtures/torch/hostile Fixtures/release/hostile -name '*.pt' -size -16k ;;
        pickle) ls Fixtures/fuzz/seeds/pickle/*; for f in $(find Fixtures/torch/hostile -name '*.pt' -size -16k); do unzip -p "$f" '*/data.pkl' > ".build-fuzz/$(basename "$f").pkl" 2>/dev/null && echo ".build-fuzz/$(basename "$f").pkl"; done ;;
        dcp) ls Fixtures/fuzz/seeds/dcp/* Fixtures/fuzz/dcp/*/.metadata ;;
        json) ls Fixtures/*/valid.json Fixtures/tokenizer/valid/*.json Schemas/*.json ;;
        config) ls .build/example/arafusion-tiny/config.json 2>/dev/null
                printf '{"model_type": "gpt2", "vocab_size": 128, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": 64, "n_positions": 16, "activation_function": "gelu", "layer_norm_epsilon": 1e-05}' > .build-fuzz/seed-gpt2.json
                printf '{"vocab_size": 512, "d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256, "max_seq_len": 32, "dropout": 0.0, "activation": "relu", "causal": false, "layer_norm_eps": 1e-05}' > .build-fuzz/seed-training.json
                echo .build-fuzz/seed-gpt2.json .build-fuzz/seed-training.json ;;
        # The example bundle's JSON files, each behind the byte that selects it (BundleSeed.replaceable's order).
        bundle) i=0; for f in config.json generation_config.json manifest.json tokenizer.json tokenizer_config.json special_tokens_map.json training_metadata.json; do
                    [ -f ".build/example/arafusion-tiny/$f" ] && { printf "\\x$(printf %02x $i)" > ".build-fuzz/seed-bundle-$i"; cat ".build/example/arafusion-tiny/$f" >> ".build-fuzz/seed-bundle-$i"; echo ".build-fuzz/seed-bundle-$i"; }
                    i=$((i+1)); done ;;
        # (opcode, count) programs: deep tuples, lists with APPEND, dicts, persistent ids.
        gguf) ls Fixtures/fuzz/seeds/gguf/* Fixtures/gguf/hostile/*.gguf ;;
        # The plan of docs/ci-recipe.md, and a few rows of a run's log in each form.
        plan) ls Fixtures/fuzz/seeds/plan/*; awk '/^```toml/{f=1;next}/^```/{f=0}f' docs/ci-recipe.md > .build-fuzz/seed-plan.toml; echo .build-fuzz/seed-plan.toml ;;
        traininglog) printf '_step,train/loss,val/loss,lr,tokens\n0,6.2,6.3,0.0001,0\n100,4.0,,0.003,409600\n200,3.1,3.4,NaN,819200\n' > .build-fuzz/seed-log.csv
                     printf '{"_step": 0, "train/loss": 6.2, "val/loss": 6.3, "lr": 0.0001}\n{"_step": 1, "train/loss": 5.0, "lr": 0.0002}\n' > .build-fuzz/seed-log.jsonl
                     echo .build-fuzz/seed-log.csv .build-fuzz/seed-log.jsonl ;;
        # The release.json of a set made from the example's checkpoint: a bundle with its archive, int8, GPT-2.
        release) if [ -x .build/release/arapack ]; then
                     rm -rf .build-fuzz/seed-release
                     .build/release/arapack release Fixtures/torch/valid/fsdp_full_state_dict.pt .build-fuzz/seed-release --quiet \
                         --artifact dtype=bf16,archive --artifact dtype=int8 --artifact to=gpt2 >/dev/null 2>&1 &&
                         cp .build-fuzz/seed-release/release.json .build-fuzz/seed-release.json && echo .build-fuzz/seed-release.json
                 fi ;;
        # Token shards behind the byte that picks their form: .npy files (0), Megatron indexes (1).
        tokens) i=0; for f in Fixtures/tokens/heldout_u16.npy Fixtures/tokens/hostile/*.npy; do printf '\x00' > ".build-fuzz/seed-tokens-$i"; head -c 4096 "$f" >> ".build-fuzz/seed-tokens-$i"; echo ".build-fuzz/seed-tokens-$i"; i=$((i+1)); done
                for f in Fixtures/tokens/megatron/heldout.idx Fixtures/tokens/hostile/*.idx; do printf '\x01' > ".build-fuzz/seed-tokens-$i"; cat "$f" >> ".build-fuzz/seed-tokens-$i"; echo ".build-fuzz/seed-tokens-$i"; i=$((i+1)); done ;;
        deep-pickle) printf ')\x00\x00\x85\xff\xff' > .build-fuzz/seed-tuples; printf ']\xff\xffa\xff\xfe' > .build-fuzz/seed-lists
                     printf 'N\x00\x00Q\xff\xff' > .build-fuzz/seed-persid; echo .build-fuzz/seed-tuples .build-fuzz/seed-lists .build-fuzz/seed-persid ;;
        tokenizer) ls Fixtures/tokenizer/valid/tokenizer.json Fixtures/tokenizer/hostile/*/tokenizer.json ;;
        # An arapack signature of the example bundle (setup.sh made it) under a throwaway key.
        signature) if [ -x .build/release/arapack ] && [ -d .build/example/arafusion-tiny ]; then
                       openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out .build-fuzz/seed-key.pem 2>/dev/null &&
                       .build/release/arapack sign .build/example/arafusion-tiny --key .build-fuzz/seed-key.pem --signature .build-fuzz/seed.sig >/dev/null &&
                       echo .build-fuzz/seed.sig; rm -f .build-fuzz/seed-key.pem
                   fi ;;
        tar) ls .build/example/*.tar.zst 2>/dev/null | head -1 | xargs -r -I{} sh -c 'zstd -dc {} > .build-fuzz/seed.tar && echo .build-fuzz/seed.tar' ;;
    esac
}

# AddressSanitizer without allocation stack traces: detection is the same, reports of a finding lack the
# allocating stack (replay it with the normal build for that); recording a stack per malloc cost ~30%.
export ASAN_OPTIONS="${ASAN_OPTIONS:-malloc_context_size=0}"

status=0
for target in "${targets[@]}"; do
    corpus=.build-fuzz/corpus/$target findings=.build-fuzz/findings/$target
    mkdir -p "$corpus" "$findings"
    for f in $(seed "$target"); do [ -f "$f" ] && cp "$f" "$corpus/$(sha256sum "$f" | cut -c1-16)" || true; done
    log=.build-fuzz/$target.log
    max_len=1048576
    case "$target" in json|tokenizer|signature|config|bundle|release) max_len=65536 ;; deep-pickle) max_len=512 ;; zip|torch|pickle|dcp) max_len=16384 ;; esac
    if ARAPACK_FUZZ_TARGET=$target "$fuzzer" "$corpus" -max_total_time="$seconds" -max_len=$max_len -rss_limit_mb=2048 \
        -timeout=10 -artifact_prefix="$findings/" -print_final_stats=1 ${ARAPACK_FUZZ_SEED:+-seed=$ARAPACK_FUZZ_SEED} > "$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
        echo "fuzz $target: ${seconds}s, $runs executions, no findings"
    else
        echo "fuzz $target: FINDING (see $log and $findings)" >&2
        tail -30 "$log" >&2
        status=1
    fi
done
exit $status
