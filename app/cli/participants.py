"""`lpstudy bots` and `lpstudy participants`: pilot runs with simulated participants, and removing test data."""

from __future__ import annotations

import sys

import typer

from app.bots.responders import RESPONDERS
from app.bots.walk import VIEWPORT_WIDTH
from app.cli import common

participants_app = typer.Typer(no_args_is_help=True, help="Participants: remove test participants.")


def bots(
    slug: str = typer.Argument(..., help="The study's slug."),
    n: int = typer.Option(10, "-n", "--n", min=1, max=10_000, help="How many simulated participants."),
    base_url: str = typer.Option(..., "--base-url", help="The running server, e.g. http://127.0.0.1:8000"),
    responder: str = typer.Option("truth", "--responder", help="truth, random or model"),
    seed: int = typer.Option(0, "--seed", help="Seed of the bots' choices (answers, ages, reaction times)."),
    concurrency: int = typer.Option(4, "-c", "--concurrency", min=1, max=64, help="Bots walking at the same time."),
    model: str | None = typer.Option(
        None, "--model", help="For --responder model: a model lpstudy can load (default: the study's generation model)."
    ),
    device: str = typer.Option("cpu", "--device", help="For --responder model: cpu or cuda."),
    width: int = typer.Option(
        VIEWPORT_WIDTH,
        "--viewport-width",
        min=100,
        max=10_000,
        help="Window width (CSS px) the bots report to a study's screen check (min_viewport_width).",
    ),
    database_url: str | None = typer.Option(None),
) -> None:
    """Walk N simulated participants through the real pages of a running server, marked as test participants.

    Each bot enters by the study link (with a signed test token), passes the study's screen check (if it sets
    min_viewport_width) with a window --viewport-width px wide, consents, reads the instructions, answers
    every trial (the true label, at random, or a classifier's prediction on the image it was shown), gives
    demographics and finishes. Bots never count toward the targets and never appear in default exports.
    """
    from tqdm import tqdm

    from app.bots import responders as rs
    from app.bots.run import BotRunError, check_server, run_bots, summarise, truth_by_public_id
    from app.participants.pilots import mint_test_token
    from app.studies.service import get_study

    if responder not in RESPONDERS:
        common.fail(f"--responder must be one of {', '.join(RESPONDERS)}, not {responder!r}", 2)
    if not base_url.startswith(("http://", "https://")):
        common.fail(f"--base-url must start with http:// or https:// (got {base_url!r})")
    base_url = base_url.rstrip("/")
    s = common.settings(database_url)
    db = common.open_db(s=s)
    with db.session() as session:
        study = get_study(session, slug)
        truth = truth_by_public_id(session, study)
        gen_model = (study.config.get("generation") or {}).get("model")
    chosen: rs.Responder
    if responder == "truth":
        chosen = rs.TruthResponder(truth)
    elif responder == "random":
        chosen = rs.RandomResponder()
    else:
        spec = model or gen_model
        if not spec:
            common.fail(f"study '{slug}' names no generation model; pass --model (e.g. mnist-default)")
        try:
            from workers.models.predictor import ModelPredictor
        except ImportError as exc:
            common.fail(f"--responder model needs the worker extra (torch): {exc}")
        try:
            predictor = ModelPredictor(spec, device=device, data_dir=s.data_dir)
        except Exception as exc:  # noqa: BLE001 - any loading problem is the user's model argument
            common.fail(f"cannot load model {spec!r}: {common.one_line(exc)}")
        chosen = rs.ModelResponder(predictor)
    failures: list[str] = []
    bars: list[tqdm] = []  # made once the first bot got through, so that a setup problem is one line alone

    def done(result) -> None:  # type: ignore[no-untyped-def]
        if not bars:
            bars.append(tqdm(total=n, unit="bot", desc=f"bots ({responder})", file=sys.stderr))
        bars[0].update(1)
        if result.error:
            failures.append(result.error)
            bars[0].set_postfix_str(f"{len(failures)} failed")

    try:
        check_server(base_url)
        # signed with the server's key: the configured one, or the one a server on this database generated
        token = mint_test_token(s.with_secret_key().secret_key, slug, "bot")
        results = run_bots(
            base_url, slug, n, chosen, token, seed=seed, concurrency=concurrency, on_done=done, viewport_width=width
        )
    except BotRunError as exc:
        common.fail(str(exc))
    finally:
        for bar in bars:
            bar.close()
    with db.session() as session:
        study = get_study(session, slug)
        rows = summarise(session, study, [r.pid for r in results])
    finished = sum(r.finished for r in results)
    typer.echo(f"{finished} of {n} bots finished '{slug}' ({responder} responder, seed {seed}); marked as test.")
    for row in rows:
        acc = "-" if row.accuracy is None else f"{row.accuracy:.0%}"
        typer.echo(
            f"  {row.code}: {row.bots} bots, completed {row.completed}, failed attention {row.failed_attention}, "
            f"image accuracy {acc} ({row.correct}/{row.image_answers})"
        )
    if failures:
        common.fail(f"{len(failures)} of {n} bots did not finish; first: {failures[0]}")


@participants_app.command("delete-test")
def delete_test(
    slug: str = typer.Argument(..., help="The study's slug."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    database_url: str | None = typer.Option(None),
) -> None:
    """Delete the study's test participants (previews and bots) with their trials, and nothing else."""
    from app.participants.pilots import count_test_participants, delete_test_participants
    from app.studies.service import get_study

    db = common.open_db(database_url)
    with db.session() as session:
        study = get_study(session, slug)
        counts = count_test_participants(session, study)
        if counts.total == 0:
            typer.echo(f"Study '{slug}' has no test participants.")
            return
        what = f"{counts.total} test participant(s) of '{slug}' ({counts.preview} preview, {counts.bot} bot)"
        if not yes and not typer.confirm(f"Delete {what} and their trials?", default=False):
            common.fail("nothing deleted (confirm, or pass --yes)")
        deleted = delete_test_participants(session, study)
    typer.echo(f"Deleted {deleted.participants} test participant(s) and {deleted.trials} trial(s) of '{slug}'.")


def mount(cli: typer.Typer) -> None:
    cli.command("bots")(bots)
    cli.add_typer(participants_app, name="participants")
