"""The ``[stock]`` section of the agent configuration (re-exported by ``edge_agent.config``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StockConfig(BaseModel):
    """The stock worker (``edge_agent.stock_worker``): how often the stock book's changed positions are
    queued for sync and published.

    The book itself is always kept from committed scans (``edge_agent.store.stock``) and synced.
    Every ``interval_s`` the newest version of each changed position goes into the outbox (one
    record per position per interval) and, with ``publish`` on, onto ``…/gw/{gateway_id}/stock``
    at QoS ``publish_qos``, with the discrepancies and stock-out alerts since.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    publish: bool = True
    publish_qos: Annotated[int, Field(ge=0, le=1)] = 0
