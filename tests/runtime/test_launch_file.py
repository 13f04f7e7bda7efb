"""Launch graph validation: every mistake is named with its file and line."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from pathlib import Path

import pytest

from runtime.launch import main_from_args, parse_overrides, resolve
from runtime.launch_file import NODE_MODULES, LaunchError, load, lookup_node_type

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
name: tiny
endpoints:
  sim: ipc://{run_dir}/sim
  policy: tcp://127.0.0.1:5599
qos:
  observation: queue(64)
nodes:
  - name: sim
    type: sim
    ends_run: true
    params: {publish: $sim, actions: $policy, episodes: 2}
  - name: policy
    type: policy_onnx
    restart: {policy: on-failure, max_restarts: 2, backoff: 0.2}
    params: {policy: "{run_dir}/exported", observations: $sim, publish: $policy}
"""


def write(tmp_path: Path, text: str) -> Path:
    """The graph file, and a stand-in export where the graph's policy node looks for one
    (a run directory of tmp_path or tmp_path/run): the node refuses a missing policy."""
    for run_dir in (tmp_path, tmp_path / "run"):
        (run_dir / "exported").mkdir(parents=True, exist_ok=True)
        (run_dir / "exported" / "manifest.json").write_text("{}")
    path = tmp_path / "graph.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_graph_resolves_endpoints_qos_and_restart(tmp_path) -> None:
    graph = load(write(tmp_path, VALID), tmp_path / "run")
    sim, policy = graph.nodes
    assert sim.module == "sim.node" and sim.ends_run and not sim.restart.on_failure
    assert sim.argv[sim.argv.index("--publish") + 1] == f"ipc://{tmp_path}/run/sim"
    exported = str(tmp_path / "run" / "exported")
    assert policy.argv[:3] == ["--backend", "onnx", exported]  # policy is positional
    assert policy.argv[policy.argv.index("--observation-qos") + 1] == "queue(64)"
    assert policy.restart.max_restarts == 2 and policy.restart.backoff == 0.2
    assert graph.ipc_paths == [tmp_path / "run" / "sim"]


def test_overrides_set_parameters_and_types(tmp_path) -> None:
    checkpoint = ROOT / "checkpoints" / "pickplace"
    overrides = parse_overrides(
        ["sim.episodes=7", "policy.type=policy_torch", f"policy.policy={checkpoint}"]
    )
    graph = load(write(tmp_path, VALID), tmp_path, overrides)
    sim, policy = graph.nodes
    assert sim.argv[sim.argv.index("--episodes") + 1] == "7"
    assert policy.argv[:2] == ["--backend", "torch"]
    # An empty value is empty (no video), not the string "None" (a file named None).
    graph = load(write(tmp_path, VALID), tmp_path, parse_overrides(["sim.video="]))
    assert graph.nodes[0].argv[graph.nodes[0].argv.index("--video") + 1] == ""
    with pytest.raises(LaunchError, match="overrides name no node parameter"):
        load(write(tmp_path, VALID), tmp_path, {"nobody.episodes": 1})


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("type: policy_onnx", "type: polcy", r"graph.yaml:12: node 'policy': unknown type 'polcy'"),
        ("name: policy", "name: sim", r"graph.yaml:12: duplicate node name 'sim'"),
        ("tcp://127.0.0.1:5599", "tcp://127.0.0.1", r"graph.yaml:4: endpoint 'policy': .*PORT"),
        ("tcp://127.0.0.1:5599", "http://x:1", r"graph.yaml:4: endpoint 'policy'"),
        ("episodes: 2}", "episodes: 2, speed: 3}", r"graph.yaml:8: .*unknown params \['speed'\]"),
        ("actions: $policy", "actions: $nowhere", r"graph.yaml:8: .*unknown endpoint '\$nowhere'"),
        ("queue(64)", "queue(big)", r"graph.yaml:6: qos of topic 'observation'"),
        ("max_restarts: 2", "max_restarts: -1", r"graph.yaml:12: .*max_restarts must be 0..100"),
        (
            "max_restarts: 2, backoff: 0.2}",
            "max_restarts: 100000, backoff: 0}",
            r"graph.yaml:12: .*max_restarts must be 0..100, got 100000",
        ),
        ("backoff: 0.2}", "backoff: 0}", r"graph.yaml:12: .*backoff must be >= 0.2 s, got 0"),
        (
            "    ends_run: true\n",
            "    ends_run: true\n    restart: {policy: on-failure, max_restarts: 1}\n",
            r"graph.yaml:8: node 'sim': ends_run and a restart policy contradict",
        ),
        ("    ends_run: true\n", "    required: maybe\n", r"graph.yaml:8: .*required is true"),
        ("    ends_run: true\n", "    grace: -1\n", r"graph.yaml:8: .*grace is seconds > 0"),
        # Values the node itself would refuse at start fail here, with file and line.
        ("episodes: 2}", "episodes: 0}", r"graph.yaml:8: node 'sim' \(sim\): episodes must"),
        ("episodes: 2}", "episodes: 2, task: pickplac}", r"graph.yaml:8: .*got 'pickplac'"),
        ("episodes: 2}", "episodes: two}", r"graph.yaml:8: .*--episodes: invalid int value"),
        ("publish: $policy}", "publish: $policy, dt: -1}", r"graph.yaml:12: .*dt must be"),
        ("publish: $policy}", "publish: $policy, sampler: fast}", r"graph.yaml:12: .*sampler"),
        ("{run_dir}/exported", "{run_dir}/nowhere", r"graph.yaml:12: .*no export there"),
        ("{policy: on-failure,", "{policy: always,", r"graph.yaml:12: .*restart is 'never'"),
        (
            "  observation: queue(64)",
            "  observation: queue(64)\n  observation: latest",
            r"graph.yaml:7: duplicate key",
        ),
    ],
)
def test_mistakes_are_named_with_their_line(tmp_path, old, new, message) -> None:
    assert old in VALID
    with pytest.raises(LaunchError, match=message):
        load(write(tmp_path, VALID.replace(old, new, 1)), tmp_path)


def test_non_loopback_bind_needs_curve_keys_in_the_file(tmp_path) -> None:
    exposed = VALID.replace("tcp://127.0.0.1:5599", "tcp://10.1.2.3:5599")
    # Refused at --check, with the line of the node that binds it, not by a crash loop.
    with pytest.raises(LaunchError, match=r"graph.yaml:12: node 'policy': publish: refusing"):
        load(write(tmp_path, exposed), tmp_path)
    keyed = VALID.replace(
        "policy: tcp://127.0.0.1:5599",
        "policy: {address: 'tcp://10.1.2.3:5599', server_secret: p.key_secret, clients: ok/,"
        " client_secret: s.key_secret, server_public: p.key}",
    )
    sim, policy = load(write(tmp_path, keyed), tmp_path).nodes
    bound = policy.argv[policy.argv.index("--publish") + 1]
    connected = sim.argv[sim.argv.index("--actions") + 1]
    assert bound == "tcp://10.1.2.3:5599?secret=p.key_secret&clients=ok%2F"
    assert connected == "tcp://10.1.2.3:5599?secret=s.key_secret&server=p.key"


@pytest.mark.parametrize("kind", sorted(NODE_MODULES))
def test_launch_params_of_every_node_type_are_its_config_fields(kind: str) -> None:
    node_type = lookup_node_type(kind)
    fields = {f.name for f in dataclasses.fields(node_type.config)}
    assert node_type.params == fields - set(node_type.fixed)
    # The node's own command line takes exactly these (plus what the type fixes).
    parser = argparse.ArgumentParser()
    node_type.add_arguments(parser)
    assert {a.dest for a in parser._actions} - {"help"} == fields
    assert node_type.binds | node_type.connects | set(node_type.qos) <= node_type.params


def test_shipped_graphs_are_valid(tmp_path) -> None:
    write(tmp_path, VALID)  # the export manipulation.yaml's policy node expects
    for path in sorted((ROOT / "launch").glob("*.yaml")):
        assert load(path, tmp_path).nodes
    assert resolve("manipulation") == ROOT / "launch" / "manipulation.yaml"


def test_launch_check_reports_errors_in_one_line(tmp_path, capsys) -> None:
    bad = write(tmp_path, VALID.replace("type: sim", "type: simm"))
    args = argparse.Namespace(graph=str(bad), run_dir=tmp_path, set=[], check=True)
    assert main_from_args(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "graph.yaml:8" in err and "'simm'" in err


def test_an_unknown_graph_name_lists_the_graphs_and_a_close_match() -> None:
    with pytest.raises(LaunchError, match=r"did you mean 'manipulation'\?.*explore-world"):
        resolve("manipulaton")


def test_a_graph_whose_policy_was_never_exported_says_what_to_run_first(tmp_path) -> None:
    with pytest.raises(LaunchError, match=r"manipulation.yaml:\d+: .*warmloop export"):
        load(resolve("manipulation"), tmp_path / "fresh")


def test_a_finished_launch_says_where_its_outputs_went(tmp_path) -> None:
    from runtime.launch import output_lines

    (tmp_path / "run.mcap").write_bytes(b"x")
    (tmp_path / "view").mkdir()
    (tmp_path / ".lock").write_text("1")
    assert output_lines(tmp_path) == f"outputs in {tmp_path}: run.mcap, view/\n"
    assert output_lines(tmp_path / "view") == f"outputs: none in {tmp_path / 'view'}\n"
