"""Flower SecAgg+ (flwr 1.42) in one process: its own workflow and mod, every message
serialised to protobuf and back. Runs in bench/.venv-peers (`make bench-peers`), never
in Accord's venv.

    bench/.venv-peers/bin/python bench/flower_secaggplus.py --parameters 1000000 \\
        --clients 10 --repeats 5 [--drop 1]

What runs: `DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares, threshold))` of
`flwr.server` with `FedAvg`, driven by an in-process `Grid` whose `send_and_receive`
serialises each message (`flwr.common.serde.message_to_proto`) to bytes, parses it back,
and calls the destination node's `ClientApp(client_fn, mods=[secaggplus_mod])` with that
node's own persistent `Context`; the reply travels back the same way. Each client's fit
returns the same float32 vector (`--parameters` long, seeded). Client time is the time
spent inside the client apps (per client: divided by the clients), server time the
rest of the round minus serialisation; bytes per parameter are those of one client's
masked-vector reply (stage `collect_masked_vectors`), as serialised protobuf.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import time
from typing import Any, ClassVar

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.logger import FLOWER_LOGGER
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

FLOWER_LOGGER.setLevel(logging.WARNING)


class Timer:
    client_s = 0.0
    serde_s = 0.0
    masked_bytes: ClassVar[list[int]] = []


def wire(message: Message) -> Message:
    start = time.perf_counter()
    data = message_to_proto(message).SerializeToString()
    proto = ProtoMessage()
    proto.ParseFromString(data)
    out = message_from_proto(proto)
    Timer.serde_s += time.perf_counter() - start
    return out, len(data)


class InProcessGrid(Grid):
    def __init__(self, apps: dict[int, ClientApp], drop: set[int]) -> None:
        self._apps = apps
        self._drop = drop
        self._contexts = {
            nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
            for nid in apps
        }
        self._run = Run.create_empty(1)

    def set_run(self, run: Any) -> None:
        pass

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(
            content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id
        )

    def get_node_ids(self):
        return list(self._apps)

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            nid = message.metadata.dst_node_id
            received, _ = wire(message)
            stage = ""
            with contextlib.suppress(KeyError):
                stage = str(received.content.config_records["secaggplus_configs"]["stage"])
            if nid in self._drop and stage == "collect_masked_vectors":
                continue  # drops out at the upload stage
            start = time.perf_counter()
            TaskIdentity.node_id = nid
            try:
                reply = self._apps[nid](received, self._contexts[nid])
            finally:
                TaskIdentity.node_id = SUPERLINK_NODE_ID
            Timer.client_s += time.perf_counter() - start
            back, size = wire(reply)
            if stage == "collect_masked_vectors":
                Timer.masked_bytes.append(size)
            replies.append(back)
        return replies


def num_shares(clients: int) -> int:
    """Every other client a neighbour: n - 1 shares when odd (Flower wants an odd count)."""
    return clients - 1 if (clients - 1) % 2 else clients


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parameters", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--drop", type=int, default=0)
    args = parser.parse_args()
    vector = (np.random.default_rng(5).standard_normal(args.parameters) * 1e-4).astype(np.float32)

    class Client(NumPyClient):
        def fit(self, parameters, config):
            return [vector], 5, {}

    def client_fn(context: Context):
        return Client().to_client()

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    TaskIdentity.task_id = 1
    rounds = []
    for _ in range(args.repeats):
        Timer.client_s = Timer.serde_s = 0.0
        Timer.masked_bytes.clear()
        apps = {
            nid: ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
            for nid in range(1001, 1001 + args.clients)
        }
        grid = InProcessGrid(apps, set(range(1001, 1001 + args.drop)))
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=args.clients,
            min_available_clients=args.clients,
            initial_parameters=ndarrays_to_parameters([np.zeros_like(vector)]),
        )
        context = LegacyContext(
            context=Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            config=ServerConfig(num_rounds=1),
            strategy=strategy,
        )
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=num_shares(args.clients),
                reconstruction_threshold=max(2, args.clients // 2),
            )
        )
        start = time.perf_counter()
        workflow(grid, context)
        total = time.perf_counter() - start
        rounds.append(
            {
                "round_s": total,
                "client_s_per_client": Timer.client_s / args.clients,
                "server_s": total - Timer.client_s - Timer.serde_s,
                "serde_s": Timer.serde_s,
                "masked_bytes_per_param": statistics.median(Timer.masked_bytes) / args.parameters
                if Timer.masked_bytes
                else None,
                "uploads": len(Timer.masked_bytes),
            }
        )
    print(
        json.dumps(
            {
                "flwr": "1.42.0",
                "parameters": args.parameters,
                "clients": args.clients,
                "drop": args.drop,
                "runs": rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
