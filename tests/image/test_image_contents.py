"""What the zk0 image holds: one environment for both roles, non-root, no build leftovers."""

from image_helpers import ROOT, VERSION, docker


def test_runs_as_non_root_uid_49999(inspect, run_in):
    assert inspect["Config"]["User"] == "49999:49999"
    result = run_in("id -u; id -g")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["49999", "49999"]


def test_superlink_and_supernode_run(run_in):
    version = run_in("flower-superlink --version")
    assert version.returncode == 0, version.stderr
    assert "1.42.0" in version.stdout
    node = run_in("flower-supernode --help")
    assert node.returncode == 0, node.stderr
    for flag in (
        "--superlink",
        "--root-certificates",
        "--auth-supernode-private-key",
        "--node-config",
        "--health-server-address",
    ):
        assert flag in node.stdout, flag
    warm = run_in("zk0-supernode --help")  # what the client stack runs
    assert warm.returncode == 0 and "flower-supernode" in warm.stdout, warm.stderr


def test_apps_import_without_network(run_in):
    # --network none: nothing may be installed or fetched at run time.
    result = run_in("python -c 'import zk0, lerobot, flwr, torch, sys; print(sys.prefix, zk0.__file__)'")
    assert result.returncode == 0, result.stderr
    prefix, module = result.stdout.split()
    assert prefix == "/opt/zk0/venv"
    assert module.startswith("/opt/zk0/venv/lib/python3.12/site-packages/zk0/"), module


def test_torchcodec_finds_ffmpegs_libraries(run_in):
    # lerobot's preferred video decoder loads only where FFmpeg's shared libraries are installed.
    result = run_in(
        "python -c 'import torchcodec; from torchcodec.decoders import VideoDecoder; "
        "print(torchcodec.ffmpeg_major_version)'"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip()) >= 4, result.stdout


def test_a_node_reads_a_video_dataset_with_torchcodec(run_in):
    # As a node opens its dataset: one line naming the decoder, and no torchcodec traceback.
    script = """
import logging
logging.basicConfig(level=logging.INFO)
from zk0.data.loading import open_dataset
from zk0.data.synthetic import SyntheticDatasetConfig, write_synthetic_dataset
root = write_synthetic_dataset("/tmp/video", SyntheticDatasetConfig.recording(episodes=2, frames_per_episode=12))
print("frame", tuple(open_dataset(f"local:{root}", [0, 1], None)[13]["observation.images.wrist"].shape))
"""
    result = run_in(f"python - <<'EOF'\n{script}\nEOF", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "frame (3, 48, 64)" in result.stdout
    assert "video decoder: torchcodec" in result.stderr
    assert "Traceback" not in result.stderr and "libtorchcodec" not in result.stderr, result.stderr[-3000:]


def test_package_version_is_the_checkouts(run_in):
    result = run_in("python -c 'import zk0; print(zk0.__version__)'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == VERSION


def test_oci_labels(inspect):
    labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == "zk0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "org.opencontainers.image.source" in labels


def test_environment(inspect):
    env = dict(item.split("=", 1) for item in inspect["Config"]["Env"])
    assert env["PATH"].startswith("/opt/zk0/venv/bin:")
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert not [k for k in env if k in {"SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"}]
    assert inspect["Config"]["Entrypoint"] in (None, [])


def test_venv_is_read_only_for_the_runtime_user(run_in):
    result = run_in(
        "touch /opt/zk0/venv/x 2>/dev/null && echo writable || echo read-only; "
        "touch $FLWR_HOME/x && touch /var/lib/zk0/x && echo state-ok"
    )
    assert result.stdout.split() == ["read-only", "state-ok"], result.stderr


def test_no_build_tools(run_in):
    result = run_in(
        "for tool in gcc cc c++ g++ make ld as with-build-ca; do "
        "command -v $tool || true; done; ls -d /opt/build-tools /src /out 2>/dev/null || true"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_no_package_caches(run_in):
    # As root, so that /root is searched too.
    result = run_in(
        "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o "
        "\\( -path '*/.cache/uv' -o -path '*/.cache/pip' -o -name 'uv-cache' "
        "-o -path '/var/cache/apt/archives/*.deb' -o -path '/var/lib/apt/lists/*_Packages' \\) "
        "-print",
        user="0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_zk0_layer_is_small_and_after_the_dependencies(image):
    sizes = [
        int(s) for s in docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}", image).stdout.split()
    ]
    # docker history lists newest first: the zk0 package layer must come before (newer than)
    # the multi-GB dependency layer, so a code change rebuilds only a small layer.
    big = max(range(len(sizes)), key=sizes.__getitem__)
    assert sizes[big] > 1_000_000_000
    assert any(0 < s < 5_000_000 for s in sizes[:big]), sizes


def test_healthcheck_declared(inspect):
    health = inspect["Config"]["Healthcheck"]
    assert health["Test"] == ["CMD", "python", "/opt/zk0/healthcheck.py"]


def test_image_trusts_the_release_it_was_built_from(run_in):
    # The same hash `zk0 app hash .` prints in this checkout (the one the image was built from):
    # the node's default allowlist runs exactly the app that `flwr run .` sends from here.
    from zk0.supernode.trust import app_hash, parse_hashes

    result = run_in("stat -c '%U %a' /opt/zk0/trusted-apps.txt && cat /opt/zk0/trusted-apps.txt")
    assert result.returncode == 0, result.stderr
    owner_mode, text = result.stdout.split("\n", 1)
    assert owner_mode == "root 644"  # readable by the node, not writable by it
    assert parse_hashes(text, "/opt/zk0/trusted-apps.txt") == {app_hash(ROOT)}


def test_no_molecule_scenarios_in_the_image(run_in):
    # The build context has them (the release hash covers them); the wheel must not.
    result = run_in("find /opt/zk0 -name molecule -print -quit")
    assert result.returncode == 0 and result.stdout == "", result.stdout
