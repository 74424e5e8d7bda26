"""`hil build` (TFLM source bundle for an MCU profile) and `hil deploy` (profile build/flash commands)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from conftest import REPO, hil

from harness.errors import ConfigError
from harness.lab.config import load_profile
from harness.models.convert import Calibration, Converter, ModelSource
from harness.models.inspect.analysis import TFLM_ADD_METHOD, analyze

ARM_GCC = shutil.which("arm-none-eabi-gcc")
ARM_GXX = shutil.which("arm-none-eabi-g++")
M4 = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def built(tiny_model, tmp_path_factory) -> dict:
    """The tiny conv/dense Keras model -> int8 (real calibration data) -> bundle for stm32h7, via the
    CLI; the in-test Converter and the CLI share one cache, so the CLI's conversion is a cache hit."""
    d = tmp_path_factory.mktemp("mcu_build")
    cache = d / "cache"
    calib = tiny_model["dir"] / "tiny.calibration.npz"
    mv = Converter(cache / "artifacts", log=lambda m: None).convert(
        ModelSource.open(tiny_model["path"]), "int8", Calibration.from_arg(str(calib))
    )
    out = d / "bundle"
    proc = hil(
        "-v",
        "--inventory",
        str(REPO / "inventory.yaml"),
        "build",
        str(tiny_model["path"]),
        "--profile",
        "stm32h7",
        "--calibration",
        str(calib),
        "-o",
        str(out),
        env={"HILBENCH_CACHE": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "cache hit" in proc.stderr
    return {
        "dir": out,
        "artifact": Path(mv.artifact),
        "manifest": json.loads((out / "bundle.json").read_text()),
        "stdout": proc.stdout,
        "tmp": d,
    }


def _tflm_run(model: Path, arena: int, report: bool = False) -> subprocess.CompletedProcess:
    """The tflite-micro Python interpreter in a child process (a too-small arena can crash it)."""
    code = (
        "import json, sys, numpy as np\n"
        "from tflite_micro import runtime\n"
        "ip = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))\n"
        "d = ip.get_input_details(0)\n"
        "ip.set_input(np.zeros(d['shape'], dtype=d['dtype']), 0)\n"
        "ip.invoke()\n"
        "print(json.dumps(ip.get_output(0).reshape(-1).tolist()), flush=True)\n"
        "if sys.argv[3] == '1':\n"
        "    ip.print_allocations()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(model), str(arena), "1" if report else "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_build_writes_a_complete_bundle(built):
    files = {p.name for p in built["dir"].iterdir()}
    assert {
        "bundle.json",
        "README.md",
        "model.tflite",
        "model_data.cc",
        "model_data.h",
        "op_resolver.h",
        "model_settings.h",
        "hb_config.h",
        "main.cc",
        "hb_protocol.c",
        "hb_protocol.h",
        "hb_model.h",
        "port.h",
        "port_template.c",
    } <= files
    m = built["manifest"]
    assert m["schema"] == "hilbench.mcu-bundle/1"
    assert m["profile"]["name"] == "stm32h7"
    assert m["model"]["source"]["variant"] == "int8" and m["model"]["dtype"] == "int8"
    assert m["model"]["sha256"] == hashlib.sha256(built["artifact"].read_bytes()).hexdigest()
    assert m["io"]["input_bytes"] == 8 * 8 * 1 and m["io"]["output_count"] == 4
    assert m["fit"]["fits"] is True
    assert "bundle:" in built["stdout"] and "arena:" in built["stdout"]
    # main.cc is the only TFLM-dependent source besides op_resolver.h
    for name in (
        "hb_protocol.c",
        "hb_protocol.h",
        "hb_model.h",
        "port.h",
        "port_template.c",
        "model_data.cc",
        "model_settings.h",
        "hb_config.h",
    ):
        assert "tensorflow/" not in (built["dir"] / name).read_text(), name


def test_op_resolver_has_exactly_the_models_ops(built):
    model = built["dir"] / "model.tflite"
    text = (built["dir"] / "op_resolver.h").read_text()
    n = int(re.search(r"MicroMutableOpResolver<(\d+)>", text).group(1))
    methods = re.findall(r"resolver\.(Add\w+)\(\)", text)

    # what the model needs according to our analysis ...
    ops = set(analyze(model).micro_resolver_ops())
    # ... and according to TFLM's own flatbuffer reader (independent of harness.models.inspect.analysis)
    from tflite_micro import runtime

    mobj = runtime.convert_bytearray_to_object(bytearray(model.read_bytes()))
    names = {v: k for k, v in vars(runtime.schema_fb.BuiltinOperator).items() if not k.startswith("_")}
    tflm_ops = {
        names[runtime.get_builtin_code_from_operator_code(mobj.operatorCodes[op.opcodeIndex])]
        for sg in mobj.subgraphs
        for op in sg.operators
    }
    assert ops == tflm_ops
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= ops
    assert n == len(ops) == len(methods) == len(set(methods))
    assert sorted(methods) == sorted(TFLM_ADD_METHOD[o] for o in ops)
    assert built["manifest"]["resolver"]["num_ops"] == n
    assert sorted(built["manifest"]["ops"]) == sorted(ops)
    # and the real TFLM interpreter runs the model
    run = _tflm_run(model, 1 << 20)
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout.strip().splitlines()[0])) == 4


def test_arena_is_the_interpreters_report_plus_margin(built):
    m = built["manifest"]
    ar = m["arena"]
    model = built["dir"] / "model.tflite"
    # independently: the interpreter's own report (RecordingMicroAllocator, = arena_used_bytes())
    run = _tflm_run(model, 1 << 20, report=True)
    assert run.returncode == 0, run.stderr
    used = int(re.search(r"Arena allocation total (\d+) bytes", run.stderr).group(1))
    assert ar["reported_used_bytes"] == used
    # the smallest working arena the build found really works, one alignment step less does not
    align = ar["align"]
    assert ar["min_working_bytes"] % align == 0
    assert _tflm_run(model, ar["min_working_bytes"]).returncode == 0
    if ar["min_working_bytes"] > used:
        assert _tflm_run(model, ar["min_working_bytes"] - align).returncode != 0
    prof = load_profile(REPO / "device_profiles" / "stm32h7.yaml")
    margin = Fraction(str(prof.mcu.arena_margin))
    assert align == prof.mcu.arena_align and ar["margin"] == prof.mcu.arena_margin
    measured = max(used, ar["min_working_bytes"])
    expect = math.ceil(math.ceil(measured * (1 + margin)) / align) * align
    assert ar["measured_bytes"] == measured
    assert ar["size_bytes"] == expect
    settings = (built["dir"] / "model_settings.h").read_text()
    assert re.search(r"#define HB_TENSOR_ARENA_SIZE (\d+)u", settings).group(1) == str(expect)
    assert "#define HB_INPUT_BYTES 64u" in settings


def test_c_array_round_trips_to_the_model(built):
    src = (built["dir"] / "model_data.cc").read_text()
    body = re.search(r"alignas\(16\) const unsigned char g_model_data\[\] = \{(.*?)\};", src, re.S).group(1)
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    blob = built["artifact"].read_bytes()
    assert data == blob == (built["dir"] / "model.tflite").read_bytes()
    assert re.search(r"g_model_data_len = (\d+)u;", src).group(1) == str(len(blob))
    sha = hashlib.sha256(blob).hexdigest()
    assert f'g_model_id[] = "sha256:{sha[:16]}";' in src
    assert built["manifest"]["model"]["model_id"] == f"sha256:{sha[:16]}"
    try:  # the serial host accepts the ID as this artifact's (docs/SERIAL_PROTOCOL.md, Model identity)
        from harness.mcu.serial.protocol import DeviceInfo
        from harness.mcu.serial.session import verify_model
    except ImportError:
        return
    assert verify_model(DeviceInfo(model_id=f"sha256:{sha[:16]}"), sha)[0] is True


@pytest.mark.arm_gcc
def test_non_tflm_sources_compile_for_cortex_m4(built, tmp_path):
    b = built["dir"]
    for src in ("hb_protocol.c", "port_template.c"):
        proc = subprocess.run(
            [ARM_GCC, *M4, "-std=c99", "-Wpedantic", f"-I{b}", "-c", str(b / src), "-o", str(tmp_path / (src + ".o"))],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [
            ARM_GCC,
            *M4,
            "-std=c99",
            "-Wpedantic",
            "-DHB_ENERGY_MODE=1",
            f"-I{b}",
            "-c",
            str(b / "hb_protocol.c"),
            "-o",
            str(tmp_path / "energy.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [
            ARM_GXX,
            *M4,
            "-std=c++17",
            "-fno-rtti",
            "-fno-exceptions",
            f"-I{b}",
            "-c",
            str(b / "model_data.cc"),
            "-o",
            str(tmp_path / "model_data.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    # the protocol layer + porting layer + model data link into an image (TFLM-free model stub)
    stub = tmp_path / "stub_model.c"
    stub.write_text(
        '#include "hb_model.h"\n#include "hb_protocol.h"\n#include "model_data.h"\n'
        "int hb_model_init(void){return 0;}\nconst char *hb_model_id(void){return g_model_id;}\n"
        "size_t hb_model_input_bytes(void){return 64;}\n"
        "int hb_model_load_input(const uint8_t *d, size_t n){(void)d;(void)n;return 0;}\n"
        "int hb_model_invoke(void){return 0;}\nsize_t hb_model_output_count(void){return 0;}\n"
        "float hb_model_output(size_t i){(void)i;return 0.0f;}\n"
        "int hb_model_arena(size_t *u, size_t *s){*u=0;*s=0;return 1;}\n"
        "int main(void){hb_benchmark_main();return 0;}\n"
    )
    proc = subprocess.run(
        [
            ARM_GCC,
            *M4,
            f"-I{b}",
            str(stub),
            str(tmp_path / "hb_protocol.c.o"),
            str(tmp_path / "port_template.c.o"),
            str(tmp_path / "model_data.o"),
            "--specs=nosys.specs",
            "--specs=nano.specs",
            "-o",
            str(tmp_path / "image.elf"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


# Just enough of the TFLM API (as in tflite-micro's micro_interpreter.h etc.) to type-check main.cc
# and op_resolver.h; the real headers are not available here.
_TFLM_STUB = {
    "tensorflow/lite/c/common.h": """
#pragma once
#include <stddef.h>
#include <stdint.h>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3,
               kTfLiteInt16 = 7, kTfLiteInt8 = 9 } TfLiteType;
typedef struct { int size; int data[4]; } TfLiteIntArray;
typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef union { int32_t* i32; float* f; char* raw; const char* raw_const; uint8_t* uint8;
                int16_t* i16; int8_t* int8; void* data; } TfLitePtrUnion;
typedef struct { TfLiteType type; TfLitePtrUnion data; TfLiteIntArray* dims;
                 TfLiteQuantizationParams params; size_t bytes; } TfLiteTensor;
""",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": """
#pragma once
#include "tensorflow/lite/c/common.h"
namespace tflite {
class MicroOpResolver {};
template <unsigned int tOpCount> class MicroMutableOpResolver : public MicroOpResolver {
 public:
%METHODS%
};
}  // namespace tflite
""",
    "tensorflow/lite/micro/micro_interpreter.h": """
#pragma once
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#define TFLITE_SCHEMA_VERSION (3)
namespace tflite {
class MicroResourceVariables; class MicroProfilerInterface;
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size, MicroResourceVariables* resource_variables = nullptr,
                   MicroProfilerInterface* profiler = nullptr, bool preserve_all_tensors = false);
  ~MicroInterpreter();
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  size_t inputs_size() const;
  TfLiteTensor* output(size_t index);
  size_t outputs_size() const;
  size_t arena_used_bytes() const;
};
}  // namespace tflite
""",
    "tensorflow/lite/micro/system_setup.h": "#pragma once\nnamespace tflite { void InitializeTarget(); }\n",
    "tensorflow/lite/schema/schema_generated.h": """
#pragma once
#include <stdint.h>
namespace tflite {
struct Model { uint32_t version() const; };
inline const Model* GetModel(const void* buf) { return static_cast<const Model*>(buf); }
}  // namespace tflite
""",
}


def type_check_main(bundle: Path, stub_dir: Path, extra_stub: dict[str, str] | None = None):
    """g++ -fsyntax-only of a bundle's main.cc for Cortex-M4 against the TFLM API stub (written to
    `stub_dir`, with the resolver methods the model's ops need, plus `extra_stub` headers)."""
    methods = "\n".join(f"  TfLiteStatus {m}();" for m in sorted(set(TFLM_ADD_METHOD.values())))
    for rel, text in {**_TFLM_STUB, **(extra_stub or {})}.items():
        p = stub_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text.replace("%METHODS%", methods))
    return subprocess.run(
        [
            ARM_GXX,
            *M4,
            "-std=c++17",
            "-fno-rtti",
            "-fno-exceptions",
            "-fsyntax-only",
            f"-I{stub_dir}",
            f"-I{bundle}",
            str(bundle / "main.cc"),
        ],
        capture_output=True,
        text=True,
    )


@pytest.mark.arm_gcc
def test_tflm_glue_type_checks_against_the_tflm_api(built, tmp_path):
    proc = type_check_main(built["dir"], tmp_path)
    assert proc.returncode == 0, proc.stderr


def _tiny_profile_dir(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "tiny-mcu.yaml").write_text(
        yaml.safe_dump(
            {
                "description": "too small for anything",
                "arch": "armv6-m",
                "cores": 1,
                "ram_mb": 0.004,
                "flash_mb": 0.032,
                "runtime": "tflm",
                "mcu": {"arena_margin": 0.2, "arena_align": 16},
                "budgets": {"max_arena_bytes": 1024},
            }
        )
    )
    return d


def test_build_refuses_a_model_that_does_not_fit(built, tmp_path):
    d = _tiny_profile_dir(tmp_path)
    proc = hil(
        "--profiles", str(d), "build", str(built["artifact"]), "--profile", "tiny-mcu", "-o", str(tmp_path / "out")
    )
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("hil: error: model ") and "does not fit profile 'tiny-mcu'" in err
    assert "tiny-mcu.yaml" in err
    assert "flash: needs ~" in err and "33,554 bytes (flash_mb 0.032)" in err
    assert "budgets.max_arena_bytes is 1,024" in err
    assert "RAM: needs ~" in err and "ram_mb 0.004" in err
    assert not (tmp_path / "out" / "bundle.json").exists()


def test_fit_check_arithmetic():
    from harness.mcu.fit import BASE_CODE_BYTES, OP_CODE_BYTES, RAM_OVERHEAD_BYTES, check_fit, require_fit

    prof = load_profile(REPO / "device_profiles" / "esp32-s3.yaml")
    rep = check_fit(prof, 100_000, ["CONV_2D", "RESHAPE"], 300_000, 1000)
    assert rep.code_estimate_bytes == BASE_CODE_BYTES + OP_CODE_BYTES["CONV_2D"] + OP_CODE_BYTES["RESHAPE"]
    assert rep.flash_limit_bytes == 4194304 and rep.flash_limit_source == "budgets.max_flash_bytes"
    assert rep.ram_estimate_bytes == 300_000 + 1000 + RAM_OVERHEAD_BYTES
    assert rep.fits
    big = check_fit(prof, 100_000, ["CONV_2D"], 400_000, 1000)
    assert not big.fits and len(big.problems) == 1 and "max_arena_bytes is 327,680" in big.problems[0]
    with pytest.raises(ConfigError, match="esp32-s3"):
        require_fit(big, "m")


def test_build_refuses_non_mcu_profiles_and_float_models(built, tmp_path):
    inv = str(REPO / "inventory.yaml")
    proc = hil("--inventory", inv, "build", str(built["artifact"]), "--profile", "localhost", "-o", str(tmp_path / "o"))
    assert proc.returncode == 3 and "runtime 'litert'" in proc.stderr
    proc = hil("--inventory", inv, "build", str(built["artifact"]), "--profile", "nope")
    assert proc.returncode == 3 and "no profile 'nope'" in proc.stderr
    proc = hil("--inventory", inv, "build", str(built["artifact"]), "--profile", "stm32h7", "--variant", "int8")
    assert proc.returncode == 3 and "used as-is" in proc.stderr


# ----------------------------------------------------------------------------------------- deploy


def _deploy_lab(tmp_path: Path, build_cmd: str, flash_cmd: str | None) -> Path:
    lab = tmp_path / "lab"
    (lab / "device_profiles").mkdir(parents=True)
    prof = yaml.safe_load((REPO / "device_profiles" / "stm32h7.yaml").read_text())
    prof["mcu"]["build_cmd"] = build_cmd
    prof["mcu"]["flash_cmd"] = flash_cmd
    (lab / "device_profiles" / "stm32h7.yaml").write_text(yaml.safe_dump(prof))
    (lab / "inventory.yaml").write_text(
        yaml.safe_dump(
            {
                "devices": [
                    {
                        "id": "h7-bench",
                        "profile": "stm32h7",
                        "transport": {"type": "serial", "port": "/dev/ttyFAKE0", "baudrate": 115200},
                    }
                ]
            }
        )
    )
    return lab


def test_deploy_reports_a_failing_build_command(built, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(built["dir"], bundle)
    lab = _deploy_lab(tmp_path, "sh -c 'echo building {device} on {port} in $(pwd); exit 3'", "echo never")
    proc = hil("--inventory", str(lab / "inventory.yaml"), "deploy", "--device", "h7-bench", str(bundle))
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    log = bundle / "logs" / "build.log"
    assert "build command `sh -c" in err and "exit code 3" in err and f"log: {log}" in err
    assert "device 'h7-bench'" in err
    text = log.read_text()
    assert f"building h7-bench on /dev/ttyFAKE0 in {bundle}" in text
    assert not (bundle / "logs" / "flash.log").exists()


def test_build_for_a_device_then_deploy(built, tmp_path):
    lab = _deploy_lab(
        tmp_path,
        "sh -c 'echo built > built.txt'",
        "sh -c 'echo flashing {model_id} to {port} at {baudrate} from {bundle}'",
    )
    inv = str(lab / "inventory.yaml")
    bundle = tmp_path / "bundle"
    proc = hil("--inventory", inv, "build", str(built["artifact"]), "--device", "h7-bench", "-o", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((bundle / "bundle.json").read_text())["profile"]["name"] == "stm32h7"
    proc = hil("--inventory", inv, "deploy", "--device", "h7-bench", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "built.txt").read_text().strip() == "built"
    mid = built["manifest"]["model"]["model_id"]
    assert f"flashing {mid} to /dev/ttyFAKE0 at 115200 from {bundle}" in (bundle / "logs" / "flash.log").read_text()
    assert "build: ok" in proc.stdout and "flash: ok" in proc.stdout
    # a board that another hilbench process is measuring is never flashed under it
    from harness.lab.config import load_inventory
    from harness.run.device_lock import DeviceLock

    env = {"HILBENCH_LOCK_DIR": str(tmp_path / "locks")}
    held = DeviceLock(
        load_inventory(lab / "inventory.yaml").device("h7-bench"), run_id="nightly-3", directory=tmp_path / "locks"
    )
    assert held.acquire(wait=False)
    try:
        busy = hil("--inventory", inv, "deploy", "--device", "h7-bench", str(bundle), "--no-wait", env=env)
    finally:
        held.release()
    assert busy.returncode == 2 and "device 'h7-bench' is busy: in use by pid" in busy.stderr, busy.stderr
    assert "run nightly-3" in busy.stderr


def test_deploy_config_errors(built, tmp_path):
    from harness.mcu.flash import expand_command

    with pytest.raises(ConfigError, match=r"unknown placeholder \{serial\}"):
        expand_command("flash {serial}", {"port": "x"}, "p")
    assert expand_command("a '{port} b' c", {"port": "/dev/x y"}, "p") == ["a", "/dev/x y b", "c"]
    bundle = tmp_path / "bundle"
    shutil.copytree(built["dir"], bundle)
    lab = _deploy_lab(tmp_path, "no-such-tool-hilbench build", None)
    inv = str(lab / "inventory.yaml")
    proc = hil("--inventory", inv, "deploy", "--device", "h7-bench", str(bundle))
    assert proc.returncode == 3 and "command not found: 'no-such-tool-hilbench'" in proc.stderr
    proc = hil("--inventory", inv, "deploy", "--device", "h7-bench", str(tmp_path))
    assert proc.returncode == 3 and "no bundle.json" in proc.stderr
