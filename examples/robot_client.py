"""A robot's control loop against `warmloop serve`: read the state, ask, execute at a rate.

    warmloop serve exported/pickplace --bind tcp://127.0.0.1:5570 --dt 0.1
    python examples/robot_client.py --server tcp://127.0.0.1:5570

The MuJoCo PickPlace scene stands in for the robot: replace `read_state`, `apply` and
`hold` with your robot's. Needs `pip install 'warmloop[sim]'` for the stand-in only.
"""

import argparse
import time

import numpy as np

from policies.client import PolicyClient
from runtime.chunks import ChunkExecutor
from runtime.rate import Rate
from sim.envs import make_env
from streams import RequestTimeout

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--server", default="tcp://127.0.0.1:5570")
parser.add_argument("--dt", type=float, default=0.1, help="control period, as served")
parser.add_argument("--episodes", type=int, default=1)
parser.add_argument("--seed", type=int, default=300_000)
args = parser.parse_args()

env = make_env("pickplace")
robot = env.unwrapped  # the MuJoCo scene: its task knows the safe hold
client = PolicyClient(args.server, name="example-arm", timeout=0.5, retries=1)
executor = ChunkExecutor("latest")  # the same executor the sim node runs
successes, held = 0, 0

for episode in range(args.episodes):
    state, _ = env.reset(seed=args.seed + episode)  # read_state()
    executor.clear()
    rate, done, step, info = Rate(1.0 / args.dt), False, 0, {}
    while not done:
        try:
            chunk = client.infer(state, step=step, episode=episode)
            executor.offer(chunk, time.monotonic())
        except RequestTimeout:
            pass  # the server is gone: hold below until it answers again
        action = executor.due_action(time.monotonic())
        if action is None:  # hold(): nothing fresh to execute
            held += 1
            action = robot.task.hold_action(robot.physics)
        state, _, terminated, truncated, info = env.step(np.asarray(action))  # apply()
        done, step = terminated or truncated, step + 1
        rate.sleep()
    successes += bool(info.get("success"))
    print(f"episode {episode}: success={bool(info.get('success'))} steps={step}")

print(f"success: {successes}/{args.episodes}, held {held} ticks, reconnects {client.reconnects}")
client.close()
