"""The review desk's web app: routes over OUT, the loaded model, and the annotation writer.

``create_app(settings)`` checks OUT (its views must load), loads the model once and returns a
FastAPI app; ``audify serve`` (``cli/serve.py``) runs it with uvicorn. Pages are rendered on the
server (``pages``, ``segment_page``, ``recording_page``, ``queue_pages``, ``calibrate_page``); the
writes are ``POST /api/annotations`` (verdicts) and ``POST /api/thresholds`` (a calibrated threshold).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from audify_batch.app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    calibration,
    custom_heads,
    data,
    pages,
    queue_pages,
    queueing,
)
from audify_batch.app.calibrate_page import calibrate_page
from audify_batch.app.calibration import served_thresholds
from audify_batch.app.media import Explainer, cut_wav
from audify_batch.app.recording_page import recording_page
from audify_batch.app.security import Guard, read_json
from audify_batch.app.segment_page import SegmentView, segment_page, similar_fragment
from audify_batch.app.verdicts import VerdictRequest, annotations_for
from audify_batch.ingest.audio_io import AudioDecodeError
from audify_batch.model.checkpoint import ModelCard, load_checkpoint
from audify_batch.model.inference import prepare_for_inference
from audify_batch.model.network import Network
from audify_batch.report.html import esc
from audify_batch.report.run_report import html_report
from audify_batch.review import queues
from audify_batch.store.annotations import MAX_ANNOTATOR_CHARS, AnnotationWriter
from audify_batch.store.query import normalize_out, remote_filesystem

STATIC_DIR = Path(__file__).resolve().parent / "static"
Parsed = TypeVar("Parsed")


@dataclass(frozen=True)
class AppSettings:
    out: str
    model: str = "default"  # default, fast, or a checkpoint folder: draws the figures, lists labels
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    annotator: str = "reviewer"
    token: str | None = None  # for a non-loopback host; None: a new one

    def __post_init__(self) -> None:
        if not 0 < len(self.annotator) <= MAX_ANNOTATOR_CHARS or not self.annotator.isprintable():
            raise ValueError(f"--annotator must be 1 to {MAX_ANNOTATOR_CHARS} printable characters")


class PageError(Exception):
    def __init__(self, status: int, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.model = status, message, model


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _offset(params: dict[str, str], name: str = "offset") -> int:
    text = params.get(name, "0")
    if not text.isdigit() or len(text) > 9:
        raise PageError(422, f"{name}: a whole number, got {text[:20]!r}")
    return int(text)


class Desk:
    """The state every route shares: OUT, the loaded model, the writer, the annotator."""

    def __init__(self, settings: AppSettings, loaded: tuple[Network, ModelCard]) -> None:
        self.out = normalize_out(settings.out)
        self.annotator = settings.annotator
        self.explainer = Explainer(*loaded)
        self.writer = AnnotationWriter(self.out)
        self.filesystem = remote_filesystem(self.out)

    def db(self) -> Any:
        return data.open_db(self.out, self.filesystem)

    def model(self, con: duckdb.DuckDBPyConnection, requested: str | None) -> str | None:
        """The requested model partition (404 if OUT has none of that name), else the latest run's."""
        known = data.models(con)
        if requested:
            if requested not in known:
                raise PageError(404, f"no model {requested!r} in this output")
            return requested
        return known[0] if known else None

    def needs_model(self, con: duckdb.DuckDBPyConnection, requested: str | None) -> str:
        model = self.model(con, requested)
        if model is None:
            raise PageError(404, "no labeled segments in this output yet")
        return model

    def segment(self, con: duckdb.DuckDBPyConnection, model: str, segment_id: str) -> data.Segment:
        found = data.find_segment(con, model, segment_id)
        if found is None:
            raise PageError(404, f"no segment {segment_id} of model {model}", model)
        return found

    # pages

    def overview(self, request: Request) -> str:
        params = _query(request)
        offset = _offset(params)
        with self.db() as con:
            model = self.model(con, params.get("model"))
            totals = data.overview(con)
            if model is None:
                return pages.overview_page(None, totals, totals, totals, 0)
            labels = data.label_counts(con, model)
            recs = data.recordings(con, model, data.PAGE_SIZE, offset)
            heads = custom_heads.summaries(con, self.out, model)
        return pages.overview_page(model, totals, labels, recs, offset, heads)

    def segments(self, request: Request) -> str:
        params = _query(request)
        offset = _offset(params)
        filters = _checked(data.SegmentFilter.from_params, params)
        with self.db() as con:
            model = self.needs_model(con, params.get("model"))
            rows = data.list_page(con, model, filters, data.PAGE_SIZE, offset)
            choices = data.choices(con, model)
            choices["head"] = [(name, n) for name, n, _ in custom_heads.scored(con, model)]
            return pages.segments_page(model, data.models(con), filters, choices, rows, offset)

    def segment_page(self, request: Request, segment_id: str) -> str:
        params = _query(request)
        walk = _checked(data.Walk.from_params, params)
        asked = _checked(data.label_param, params) if walk is None else self.walk_label(walk)
        with self.db() as con:
            model = self.needs_model(con, params.get("model"))
            seg = self.segment(con, model, segment_id)
            around, queued = None, None
            if walk is not None:
                around, queued = self.place(con, model, walk, seg.segment_id, _offset(params, "pos"))
            view = SegmentView(
                segment=seg,
                verdicts=data.verdicts(con, model, seg.segment_id),
                label_choices=self.explainer.card.labels,
                figure_names=self.explainer.figure_names(),
                loaded_model=self.explainer.model_name,
                walk=walk,
                around=around,
                review_label=queued or asked,
                heads=custom_heads.segment_scores(con, self.out, seg),
            )
        return segment_page(view)

    def walk_label(self, walk: data.Walk) -> str | None:
        """The label a walk reviews: a label queue's, a filtered label, a filtered head's label."""
        if walk.asked_label or walk.kind != "list" or walk.filters.head is None:
            return walk.asked_label
        return custom_heads.head_label(self.out, walk.filters.head)

    def thresholds(self, model: str) -> dict[str, float] | None:
        """The per-class thresholds of ``model`` where it is the loaded model (OUT does not keep
        them), with those calibrated in OUT in their place."""
        if model != self.explainer.model_name:
            return None
        return served_thresholds(queues.card_thresholds(self.explainer.card), self.out, model)

    def queue(self, con: duckdb.DuckDBPyConnection, model: str, walk: data.Walk) -> queueing.Queue:
        try:
            return queueing.queue(con, model, walk, self.thresholds(model))
        except LookupError as error:
            raise PageError(404, str(error).strip("'\""), model) from error
        except ValueError as error:
            raise PageError(422, str(error), model) from error

    def place(
        self, con: duckdb.DuckDBPyConnection, model: str, walk: data.Walk, segment_id: str, position: int
    ) -> tuple[queueing.Neighbours, str | None]:
        """Where the segment stands in ``walk``, and the label its queue asks about (None: not queued)."""
        if walk.kind == "list":
            return queueing.list_neighbours(con, model, walk, position), None
        items = self.queue(con, model, walk).items
        queued = next((item.label for item in items if item.segment_id == segment_id), None)
        return queueing.queue_neighbours(items, segment_id), queued

    def similar(self, request: Request, segment_id: str) -> str:
        label = _checked(data.label_param, _query(request))
        with self.db() as con:
            model = self.needs_model(con, request.query_params.get("model"))
            seg = self.segment(con, model, segment_id)
            try:
                rows = data.similar(con, seg)
            except duckdb.Error as error:
                message = str(error).strip().splitlines()[0]
                return f'<p class="note">no similar segments: {esc(message)}</p>'
        return similar_fragment(model, rows, label)

    def recording(self, request: Request, recording_id: str) -> str:
        with self.db() as con:
            model = self.needs_model(con, request.query_params.get("model"))
            rec = data.recording(con, model, recording_id)
            if rec is None:
                raise PageError(404, f"no recording {recording_id} of model {model}", model)
            rows = data.timeline(con, model, rec["uri"])
            events = data.events(con, model, rec["uri"])
        return recording_page(model, rec, rows, events)

    def queue_page(self, request: Request, kind: str) -> str:
        params = _query(request)
        with self.db() as con:
            model = self.needs_model(con, params.get("model"))
            if kind == "label" and not params.get("label", "").strip():
                heads = custom_heads.summaries(con, self.out, model)
                return queue_pages.queue_index_page(model, data.queue_labels(con, model), heads)
            walk = _checked(data.Walk.label_queue if kind == "label" else lambda _: data.Walk(kind), params)
            if kind == "label" and not walk.head and not walk.seed:
                found = self.label_walk(con, model, walk)
                if found is None:
                    return queue_pages.new_label_page(model, walk.label or "")
                walk = found
            queue = self.queue(con, model, walk)
        return queue_pages.queue_page(model, walk, queue.items, queue.note)

    def label_walk(self, con: duckdb.DuckDBPyConnection, model: str, walk: data.Walk) -> data.Walk | None:
        """A label queue over the model's confidence of the label where the model gives it, else over
        the scores of a custom head of that label; None where neither scores it (a new class)."""
        if walk.label in data.queue_labels(con, model).column("label"):
            return walk
        heads = [h.name for h in custom_heads.summaries(con, self.out, model) if h.label == walk.label]
        return replace(walk, head=heads[0]) if heads else None

    def calibrate(self, request: Request) -> str:
        params = _query(request)
        query = _checked(calibration.CalibrationQuery.from_params, params)
        card = custom_heads.head_card(self.out, query.head) if query.head else None
        if query.head and not query.label:  # a head's verdicts are on its label
            query = replace(query, label=card.label if card else query.head)
        with self.db() as con:
            model = self.needs_model(con, params.get("model") or (card.model if card else None))
            reviewed = data.reviewed_labels(con, model)
            heads = custom_heads.summaries(con, self.out, model)
            outcome = calibration.run(con, self.out, model, query) if query.label else None
        return calibrate_page(model, query, outcome, reviewed, heads)

    def report(self, request: Request) -> str:
        with self.db() as con:
            model = self.model(con, request.query_params.get("model"))
        links = None if model is None else functools.partial(pages.segment_url, model)
        return html_report(self.out, model, filesystem=self.filesystem, segment_url=links)

    # media

    def audio(self, request: Request, segment_id: str) -> Response:
        with self.db() as con:
            seg = self.segment(con, self.needs_model(con, request.query_params.get("model")), segment_id)
        try:
            wav = cut_wav(seg.uri, seg.start_s, seg.end_s)
        except (AudioDecodeError, OSError, ValueError) as error:
            raise PageError(404, f"the recording is not readable now: {error}") from error
        return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    def figure(self, request: Request, segment_id: str, name: str) -> Response:
        with self.db() as con:
            seg = self.segment(con, self.needs_model(con, request.query_params.get("model")), segment_id)
        try:
            png = self.explainer.figure(seg.uri, seg.start_s, name.removesuffix(".png"))
        except (AudioDecodeError, OSError) as error:
            raise PageError(404, f"the recording is not readable now: {error}") from error
        if png is None or not name.endswith(".png"):
            raise PageError(404, f"no figure {name}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    # the writes

    async def annotate(self, request: Request) -> Response:
        """Validate, look the segment up in OUT, append; answer once the verdicts are durable."""
        verdict = await read_json(request, VerdictRequest)
        if isinstance(verdict, Response):
            return verdict
        return await run_in_threadpool(self._write, verdict)

    def _write(self, verdict: VerdictRequest) -> Response:
        with self.db() as con:
            seg = data.find_segment(con, verdict.model, verdict.segment_id)
        if seg is None:
            return JSONResponse({"detail": f"no segment {verdict.segment_id} of model {verdict.model}"}, 404)
        annotations = annotations_for(verdict, seg, self.annotator)
        self.writer.append(annotations)
        written = [
            {"label": a.label, "verdict": a.verdict.value, "annotation_id": a.annotation_id}
            for a in annotations
        ]
        return JSONResponse({"segment_id": seg.segment_id, "model": seg.model, "written": written})

    async def save_threshold(self, request: Request) -> Response:
        """Calibrate again on the server and save the threshold to the thresholds file."""
        asked = await read_json(request, calibration.SaveRequest)
        if isinstance(asked, Response):
            return asked
        return await run_in_threadpool(self._save, asked)

    def _save(self, asked: calibration.SaveRequest) -> Response:
        with self.db() as con:
            if asked.model not in data.models(con):
                return JSONResponse({"detail": f"no model {asked.model!r} in this output"}, 404)
            try:
                saved = calibration.save(con, self.out, asked)
            except ValueError as error:
                return JSONResponse({"detail": str(error)}, 422)
        return JSONResponse(saved)


def _checked(parse: Callable[[dict[str, str]], Parsed], params: dict[str, str]) -> Parsed:
    """``parse(params)``, a ValueError answered 422."""
    try:
        return parse(params)
    except ValueError as error:
        raise PageError(422, str(error)) from error


def _routes(app: FastAPI, desk: Desk) -> None:
    html: dict[str, Callable[..., str]] = {
        "/": desk.overview,
        "/segments": desk.segments,
        "/segments/{segment_id}": desk.segment_page,
        "/segments/{segment_id}/similar": desk.similar,
        "/recordings/{recording_id}": desk.recording,
        "/report": desk.report,
        "/calibrate": desk.calibrate,
    }
    for path, method in html.items():
        app.add_api_route(path, _html_route(method), methods=["GET"], response_model=None)
    app.add_api_route("/queues", _html_route(_queue(desk, "label")), methods=["GET"], response_model=None)
    for kind in ("uncertain", "near-tie"):
        app.add_api_route(
            f"/queues/{kind}", _html_route(_queue(desk, kind)), methods=["GET"], response_model=None
        )
    app.add_api_route("/audio/{segment_id}", desk.audio, methods=["GET"], response_model=None)
    app.add_api_route("/figures/{segment_id}/{name}", desk.figure, methods=["GET"], response_model=None)
    app.add_api_route("/api/annotations", desk.annotate, methods=["POST"], response_model=None)
    app.add_api_route("/api/thresholds", desk.save_threshold, methods=["POST"], response_model=None)
    # the run report's page names no icon: none, rather than a 404 in the console
    app.add_api_route("/favicon.ico", lambda: Response(status_code=204), methods=["GET"], response_model=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _queue(desk: Desk, kind: str) -> Callable[[Request], str]:
    def page(request: Request) -> str:
        return desk.queue_page(request, kind)

    return page


def _html_route(method: Callable[..., str]) -> Callable[..., Any]:
    """``method`` as a route that answers HTML (FastAPI reads its signature for the path parameters)."""

    @functools.wraps(method)
    def route(*args: Any, **kwargs: Any) -> HTMLResponse:
        return HTMLResponse(method(*args, **kwargs))

    return route


def load_model(model: str) -> tuple[Network, ModelCard]:
    network, card = load_checkpoint(model)
    return prepare_for_inference(network, torch.device("cpu")), card


def create_app(settings: AppSettings, loaded: tuple[Network, ModelCard] | None = None) -> FastAPI:
    """The app over ``settings.out``; ``loaded``: a model already loaded (else ``settings.model``)."""
    with data.open_db(normalize_out(settings.out)) as con:  # a wrong OUT fails here, not per page
        data.models(con)
    desk = Desk(settings, loaded or load_model(settings.model))
    guard = Guard.for_host(settings.host, settings.token)
    app = FastAPI(title="audify review desk", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.desk, app.state.guard = desk, guard
    app.middleware("http")(guard.check)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": error.message}, error.status)
        return HTMLResponse(pages.error_page(error.status, error.message, error.model), error.status)

    _routes(app, desk)
    return app
