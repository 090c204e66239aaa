"""The round config the coordinator announces and its client-level noise setting.

The coordinator writes it (in every task of a round and with the aggregate's first
chunk); the participant reads it back into the `RoundConfig` its round machine runs.
"""

from __future__ import annotations

from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import RoundConfig
from accord.crypto.packing import PackingSpec
from accord.crypto.quantize import QuantSpec
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.stages import profile_from_proto, profile_to_proto


def round_config_to_proto(config: RoundConfig, *, stage_deadline_s: float) -> pb.RoundConfig:
    """Everything a participant needs to take part in the round."""
    message = pb.RoundConfig(
        round=config.round,
        profile=profile_to_proto(config.profile),
        selected=list(config.selected),
        threshold=config.threshold,
        neighbour_degree=config.neighbour_degree,
        graph_seed=config.graph_seed,
        modulus_bits=config.quant.modulus_bits,
        max_participants=config.quant.max_participants,
        clip_norm=config.quant.clip_norm,
        value_bound=config.quant.value_bound or 0.0,
        weight_cap=config.quant.weight_cap or 0,
        key_epoch=config.key_epoch,
        element_count=config.element_count,
        stage_deadline_s=stage_deadline_s,
    )
    if config.client_noise is not None:
        message.client_noise.CopyFrom(client_noise_to_proto(config.client_noise))
    if config.packing is not None:
        message.fields_per_real = config.packing.fields_per_real
        message.field_bits = config.packing.field_bits
        message.scale_bits = config.packing.scale_bits
        message.poly_modulus_degree = config.packing.poly_modulus_degree
    return message


def round_config_from_proto(message: pb.RoundConfig, *, federation_id: str) -> RoundConfig:
    """The round's parameters as announced by the coordinator.

    Raises:
        ConfigError: the parameters are inconsistent (from `RoundConfig`'s own checks).
        Malformed: the profile is unknown.
    """
    quant = QuantSpec(
        modulus_bits=message.modulus_bits,
        max_participants=message.max_participants,
        clip_norm=message.clip_norm,
        value_bound=message.value_bound or None,
        weight_cap=message.weight_cap or None,
    )
    packing = None
    if message.fields_per_real:
        packing = PackingSpec(
            modulus_bits=message.modulus_bits,
            max_participants=message.max_participants,
            fields_per_real=message.fields_per_real,
            field_bits=message.field_bits,
            scale_bits=message.scale_bits,
            poly_modulus_degree=message.poly_modulus_degree,
        )
    return RoundConfig(
        federation_id=federation_id,
        round=message.round,
        profile=profile_from_proto(message.profile),
        selected=tuple(message.selected),
        threshold=message.threshold,
        quant=quant,
        element_count=message.element_count,
        packing=packing,
        neighbour_degree=message.neighbour_degree,
        graph_seed=message.graph_seed,
        key_epoch=message.key_epoch,
        client_noise=client_noise_from_proto(message.client_noise)
        if message.HasField("client_noise")
        else None,
    )


def client_noise_to_proto(noise: ClientNoise) -> pb.ClientNoise:
    """The round's client-level noise setting."""
    return pb.ClientNoise(
        noise_multiplier=noise.noise_multiplier,
        honest_fraction=noise.honest_fraction,
        delta=noise.delta,
    )


def client_noise_from_proto(message: pb.ClientNoise) -> ClientNoise:
    """The round's client-level noise setting (the caller checks that one was sent).

    Raises:
        ConfigError: the setting is out of range.
    """
    return ClientNoise(
        noise_multiplier=message.noise_multiplier,
        honest_fraction=message.honest_fraction,
        delta=message.delta,
    )
