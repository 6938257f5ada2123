"""The OpenAPI document and request validation, both from the pydantic models (spectree)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, make_response, request
from spectree import Response as ResponseSpec
from spectree import SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData
from spectree.plugins.base import Context
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import cached_type_hints, get_multidict_items

from ..errors import ApiError
from .docs import PAGE_TEMPLATES
from .examples import add_examples
from .links import add_links
from .schemas import ErrorOut

BODY_METHODS = ("POST", "PUT", "PATCH")
# Fields whose problems have an error code of their own (the contract's names).
FIELD_ERROR_CODES = {"lockReceipt": "invalid_receipt"}


def _reject_invalid_request(
    req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any
) -> None:
    """Turn spectree's validation result into the contract's 400, naming the field."""
    if req.method in BODY_METHODS and req.get_data(cache=True):
        if not req.is_json:
            raise ApiError(400, "invalid_body", "The body must be application/json.", "body")
        if req.get_json(silent=True) is None:
            raise ApiError(400, "malformed_json", "The body is not valid JSON.", "body")
    if error is None:
        return
    first = error.errors()[0]  # type: ignore[attr-defined]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    code = FIELD_ERROR_CODES.get(field, "invalid_request")
    raise ApiError(400, code, f"{field}: {first['msg']}", field)


def _json_body(request: Any) -> Any:
    """The parsed body; `false`, `0` or `[]` stay what they are (and fail the model), and
    malformed JSON (None here) is answered by `_reject_invalid_request`."""
    body = request.get_json(silent=True)
    return {} if body is None else body


class DeclaredPartsPlugin(FlaskPlugin):
    """spectree's Flask plugin, parsing only what a route declares: the stock one copies
    every header and cookie of every request, whether a model asks for them or not.

    Its `validate` takes a shorter way through the same steps for the routes that declare
    no headers, cookies or form (every route here): request models validated, the `before`
    hook, the view, a returned model instance of the status's declared model serialized
    without validating it again (as spectree does), anything else handed to spectree's
    response validation, the `after` hook. The models and the OpenAPI document are
    spectree's own."""

    def validate(
        self,
        func: Any,
        query: Any,
        json: Any,
        form: Any,
        headers: Any,
        cookies: Any,
        resp: ResponseSpec | None,
        before: Any,
        after: Any,
        validation_error_status: int,
        skip_validation: bool,
        force_resp_serialize: bool,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if form or headers or cookies or skip_validation or force_resp_serialize:
            return super().validate(
                func, query, json, form, headers, cookies, resp, before, after,
                validation_error_status, skip_validation, force_resp_serialize, *args, **kwargs,
            )  # fmt: skip
        current = request._get_current_object()  # type: ignore[attr-defined]
        adapter = self.model_adapter
        response = error = None
        try:
            self.request_validation(current, query, json, None, None, None)
        except adapter.validation_error as exc:
            error = exc
            errors = jsonify(adapter.validation_errors(exc))
            response = make_response(errors, validation_error_status)
        before(current, response, error, None, adapter)
        if error is not None:
            abort(response)
        hints = cached_type_hints(func)
        context = current.context
        if query is not None and hints.get("query"):
            kwargs["query"] = context.query
        if json is not None and hints.get("json"):
            kwargs["json"] = context.json
        result = func(*args, **kwargs)
        model = resp.find_model(200) if resp is not None else None
        if model is not None and type(result) is model:
            # Straight to JSON bytes: spectree's dump makes a str and encodes it again.
            body = result.__pydantic_serializer__.to_json(result)
            response = current_app.response_class(body, mimetype="application/json")
            after(current, response, None, None, adapter)
            return response
        response, error = self.validate_response(result, resp, False, False)
        after(current, response, error, None, adapter)
        return response

    def request_validation(
        self, request: Any, query: Any, json: Any, form: Any, headers: Any, cookies: Any
    ) -> None:
        if headers or cookies or form:  # (no route declares them: spectree's own way)
            super().request_validation(request, query, json, form, headers, cookies)
            return
        validate = self.model_adapter.validate_obj
        if json is not None and request.method in BODY_METHODS and not request.get_data(cache=True):
            # The document says this route requires a body: an empty one is no body.
            raise ApiError(400, "missing_body", "This route needs a JSON body.", "body")
        use_json = (
            json is not None
            and request.method not in ("GET", "DELETE")
            and request.mimetype not in self.FORM_MIMETYPE
        )
        request.context = Context(
            validate(query, get_multidict_items(request.args, query)) if query else None,
            validate(json, _json_body(request)) if use_json else None,
            None,
            None,
            None,
        )


api_spec = SpecTree(
    "flask",
    backend=DeclaredPartsPlugin,
    title="Lesson progress service",
    version="v1",
    path="apidoc",
    page_templates=PAGE_TEMPLATES,  # served whole by the service: offline, under the CSP
    validation_error_status=400,
    validation_error_model=ErrorOut,
    annotations=True,
    mode="strict",  # only the routes it validates: not the pages or static files
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    before=_reject_invalid_request,
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer", bearer_format="JWT"),
        )
    ],
)


def operation(
    operation_id: str,
    tag: str,
    answers: dict[int, Any],
    query: Any = None,
    json: Any = None,
    secured: bool = True,
    headers: Any = None,
) -> Any:
    """A route's validation and its operation in the document: `answers` maps each status
    to its model; a secured route takes the bearer token. A route that takes a body may
    answer 413 (over PROGRESS_MAX_BODY_BYTES, progress/body_limit.py)."""
    if json is not None:
        answers = {**answers, 413: ErrorOut}
    return api_spec.validate(
        query=query,
        json=json,
        headers=headers,
        resp=ResponseSpec(**{f"HTTP_{status}": model for status, model in answers.items()}),
        operation_id=operation_id,
        tags=[tag],
        security={"bearer": []} if secured else None,
    )


bp = Blueprint("openapi", __name__)


def document() -> dict[str, Any]:
    """The OpenAPI document: the routes' models, operation ids, examples and links."""
    return add_links(add_examples(api_spec.spec))


@bp.get("/api/v1/openapi.json", endpoint="openapi_document")
def openapi_document() -> Response:
    return jsonify(document())


def init_app(app: Flask) -> None:
    """Register after every API route, so the document sees them all."""
    app.register_blueprint(bp)
    api_spec.register(app)
