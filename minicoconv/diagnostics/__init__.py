"""Routing diagnostics: what each dynamic layer's routing does (`minicoconv inspect`)."""

from .routing import LayerRouting, collect_routing, epoch_summary, routed_layers, routing_summary

__all__ = ["LayerRouting", "collect_routing", "epoch_summary", "routed_layers", "routing_summary"]
