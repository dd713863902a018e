#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment WITHOUT -e and away from the source tree,
# and run the installed package: the CLI's help, the subpackages' imports, and tiny reconstructions of
# an imported paper sample (wiener, and 20 PINN steps). What a user who runs `pip install cusim` gets.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
shared="$(cd "$repo/../shared" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip wheel -q --no-deps -w "$work/dist" "$repo"
python3 -m venv "$work/venv"
wheel=$(ls "$work"/dist/cusim-*.whl)
# torch==2.13.0 is the CPU build this machine carries (README); the PINN's extra asks for torch>=2.1
"$work/venv/bin/pip" install -q torch==2.13.0 "$wheel[pinn]"
cd "$work"  # not the source tree: the import must come from site-packages
bin="$work/venv/bin"
"$bin/python" - <<'PY'
import cusim, cusim.recon, cusim.estimate, cusim.recon.wiener, cusim.recon.pinn, cusim._kernels
import cusim.ome, cusim.napari._reader, cusim.napari._jobs  # the plugin's reader and jobs need neither napari nor Qt
from importlib.metadata import entry_points
from importlib.resources import files
(ep,) = [e for e in entry_points(group="napari.manifest") if e.name == "cusim"]
assert files("cusim.napari").joinpath("napari.yaml").is_file(), "napari.yaml missing from the wheel"
assert "site-packages" in cusim.__file__, cusim.__file__
kdir = cusim._kernels.kernel_source_dir()
assert "site-packages" in str(kdir) and (kdir / "sim_ops.cu").is_file(), kdir
print("wheel: imports from", cusim.__file__, "version", cusim.__version__)
PY
"$bin/cusim" --help >/dev/null
"$bin/cusim" demo --help >/dev/null
"$bin/cusim" --version
"$bin/cusim" import paper "$shared/data/pinn-sim-paper/SIM/microtubules" --sample 1 -o mt1.h5
"$bin/cusim" run mt1.h5 --method wiener
"$bin/cusim" run mt1.h5 --method pinn --steps 20
echo "wheel check: passed"
