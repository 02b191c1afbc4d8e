#!/usr/bin/env bash
# The GPU measurement of issue 10, on a machine the device tool lends (bench/README.md,
# "GPU"). Two calls, because one call carries at most 64 MiB:
#   prepare: .whl (cp312 wheels the image lacks) and .gpu-weights (MiniLM in float16, the
#            development set): install, train a categoriser there, time it in process;
#   triton:  .gpu-server/ts.tar.xz (tritonserver + python backend from nvidia-pytriton):
#            serve that version with --model-config-name=gpu and load it from clients.
set -euo pipefail
part=${1:?usage: gpu_device.sh prepare|triton}
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export CATSTREAM_TEXT_MODEL_DIR=$PWD/.gpu-weights/minilm CATSTREAM_HOME=/tmp/catstream-home
python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
data=.gpu-weights
case $part in
prepare)
  nvidia-smi -L; nproc
  python3 -c "import onnxruntime as o, torch; print(o.get_available_providers(), torch.__version__)"
  python3 -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))" | xargs -I{} sh -c 'ls {}/libpython3* || true'
  rm -rf $data/repo && cp -r triton_models/repository $data/repo
  python3 -c "import sys; from catstream.cli import main; sys.exit(main(sys.argv[1:]))" \
    train --labels $data/train.jsonl --taxonomy $data/taxonomy.txt --model linear --no-load \
    --quiet --model-repository $data/repo 2>&1 | tee "$out/train.log" | tail -30
  python3 -m bench.gpu_bench inprocess --version-dir $data/repo/categoriser/1 \
    --products $data/amazon_uk_toys.jsonl --seconds 12 --output "$out/inprocess.json"
  ;;
triton)
  tar xJf .gpu-server/ts.tar.xz -C "$site" && touch "$site/pytriton/__init__.py"
  python3 -m bench.gpu_bench triton --version-dir $data/repo/categoriser/1 \
    --products $data/amazon_uk_toys.jsonl --seconds 15 --instances "${INSTANCES:-2,8}" \
    --clients "${CLIENTS:-8}" --in-flight "${IN_FLIGHT:-4}" --output "$out/triton.json" \
    2> >(tee "$out/triton.err" | tail -40 >&2)
  ;;
esac
