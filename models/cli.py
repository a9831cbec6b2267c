"""`edgehouse train anomaly|device-anomaly|demand`: train, export int8 `.tflite` + manifest, with Rich progress.

TensorFlow is imported only when a command runs (inside the training modules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="Train the gateway models and export them as int8 .tflite + manifest.", no_args_is_help=True
)

DEFAULT_OUT = Path(__file__).resolve().parent / "default"
DEFAULT_DEMAND_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "demand" / "pasta_sales_shared.csv"
)


@contextmanager
def _progress(console: Console, title: str) -> Iterator[Callable[[str, float], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task(title, total=1.0)

        def update(message: str, fraction: float) -> None:
            bar.update(task, description=f"{title}: {message}", completed=fraction)

        yield update


def _report(console: Console, title: str, metrics: dict[str, float]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    console.print(table)


@app.command()
def anomaly(
    out: Annotated[
        Path, typer.Option(help="directory for anomaly.tflite/.json and device_anomaly.tflite/.json")
    ] = DEFAULT_OUT,
    seed: Annotated[int, typer.Option()] = 7,
    epochs: Annotated[int, typer.Option(min=1)] = 6,
    series: Annotated[int, typer.Option(min=2, help="synthetic training series")] = 240,
    length: Annotated[int, typer.Option(min=200, help="readings per synthetic series")] = 3000,
    version: Annotated[int, typer.Option(min=1)] = 1,
    device: Annotated[
        bool, typer.Option("--device/--no-device", help="also train the joint (multichannel) device model")
    ] = True,
    device_epochs: Annotated[int, typer.Option(min=1, help="epochs of the device model")] = 5,
    devices: Annotated[int, typer.Option(min=4, help="synthetic training machines of the device model")] = 160,
    device_version: Annotated[int, typer.Option(min=1, help="version of the device model")] = 1,
) -> None:
    """Train the gateway's anomaly models on synthetic data (never on NAB): the streaming forecaster and,
    unless ``--no-device``, the joint device model (as ``edgehouse train device-anomaly``)."""
    from models.training.anomaly_train import AnomalyTrainConfig, train_anomaly

    console = Console()
    cfg = AnomalyTrainConfig(seed=seed, epochs=epochs, n_series=series, length=length, version=version)
    with _progress(console, "anomaly") as update:
        metrics = train_anomaly(cfg, out, update)
    _report(console, f"anomaly model -> {out}", metrics)
    if device:
        _train_device(console, out, seed, device_epochs, devices, device_version)


def _train_device(console: Console, out: Path, seed: int, epochs: int, devices: int, version: int) -> None:
    from models.training.device_train import DeviceTrainConfig, train_device

    cfg = DeviceTrainConfig(seed=seed, epochs=epochs, n_devices=devices, version=version)
    with _progress(console, "device_anomaly") as update:
        metrics = train_device(cfg, out, update)
    _report(console, f"device anomaly model -> {out}", metrics)


@app.command("device-anomaly")
def device_anomaly(
    out: Annotated[Path, typer.Option(help="directory for device_anomaly.tflite + .json")] = DEFAULT_OUT,
    seed: Annotated[int, typer.Option()] = 7,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    devices: Annotated[int, typer.Option(min=4, help="synthetic training machines")] = 160,
    version: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Train the joint (multichannel) device forecaster on synthetic machines (no simulator, no real data)."""
    _train_device(Console(), out, seed, epochs, devices, version)


@app.command()
def demand(
    out: Annotated[Path, typer.Option(help="directory for demand.tflite + demand.json")] = DEFAULT_OUT,
    data: Annotated[
        Path, typer.Option(help="wide daily CSV: DATE, QTY_<sku>..., PROMO_<sku>...")
    ] = DEFAULT_DEMAND_DATA,
    holdout_rows: Annotated[
        int, typer.Option(min=0, help="trailing rows never used for training (56 = both benchmark origins)")
    ] = 56,
    seed: Annotated[int, typer.Option()] = 7,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    members: Annotated[int, typer.Option(min=1, help="independently seeded MLPs averaged in one graph")] = 5,
    version: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Train the global 28-day quantile demand forecaster on rows before the hold-out."""
    from models.training.demand_train import DemandTrainConfig, train_demand

    console = Console()
    cfg = DemandTrainConfig(
        seed=seed, epochs=epochs, members=members, holdout_rows=holdout_rows, version=version
    )
    with _progress(console, "demand") as update:
        metrics = train_demand(cfg, data, out, update)
    _report(console, f"demand model -> {out}", metrics)


if __name__ == "__main__":
    app()
