"""Airflow's human-in-the-loop operators (the standard provider's `operators.hitl`, Airflow 3.1+):
a task asks a person to choose among options and/or fill in a form, and waits for the answer.

`HITLOperator.execute` calls its `notifiers` and defers to a `HITLTrigger`. That trigger is not
run by the triggerer: the deferral crosses to the control plane as a wait for a person (`kind:
person`), holding no process. The request (subject, body, options, defaults, params, assigned
users) is what `/api/v2/.../hitlDetails` and the UI's "Required Actions" show; an answer there
(`PATCH .../hitlDetails`) resumes the try in `execute_complete` with it. Past the task's
`execution_timeout` the try resumes with the defaults (or, without defaults, fails with
`HITLTimeoutError`), as Airflow's trigger does. `ApprovalOperator` skips its direct downstream
tasks on "Reject", `HITLBranchOperator` follows the chosen task ids, `HITLEntryOperator` is a
form with one "OK". `BaseNotifier` is `airflow.sdk.bases.notifier`'s: a callable with template
fields, usable as a notifier and as a task callback.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

from leoflow.errors import UnsupportedConstruct
from leoflow.exceptions import AirflowException
from leoflow.model import BaseOperator, Param
from leoflow.standard import direct_downstream
from leoflow.triggers import BaseTrigger, TriggerEvent


class HITLTriggerEventError(AirflowException):
    """The wait for an answer ended with an error."""


class HITLTimeoutError(HITLTriggerEventError):
    """No answer came before the task's `execution_timeout`, and it has no defaults."""


class HITLRejectException(AirflowException):
    """An `ApprovalOperator` with `fail_on_reject=True` was answered "Reject"."""


class BaseNotifier:
    """Airflow's notifier: `notify(context)` after its `template_fields` are rendered with the
    task's context. Calling it (as `notifiers=` do, or as a task callback) never raises: a
    failure is logged."""

    template_fields: Sequence[str] = ()

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"airflow.task.notifiers.{type(self).__name__}")

    def notify(self, context: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define notify(self, context)")

    def render_template_fields(self, context: dict[str, Any]) -> None:
        from leoflow.templates import create_environment, render_value, template_context

        env = create_environment(context.get("dag"))
        values = template_context(context)
        for name in self.template_fields:
            setattr(self, name, render_value(getattr(self, name), values, env))

    def __call__(self, *args: Any) -> None:
        context: dict[str, Any] = dict(args[0]) if args and isinstance(args[0], Mapping) else {}
        try:
            self.render_template_fields(context)
            self.notify(context)
        except Exception:  # noqa: BLE001 - a notifier never fails its task
            self.log.exception("Failed to send notification")


class HITLTrigger(BaseTrigger):
    """What a human-in-the-loop task waits for. The control plane waits for the answer itself
    (it never runs in the triggerer); `unanswered` is the event at `timeout_datetime`."""

    def __init__(
        self,
        *,
        options: list[str],
        params: dict[str, Any],
        defaults: list[str] | None = None,
        multiple: bool = False,
        timeout_datetime: dt.datetime | None = None,
        poke_interval: float = 5.0,
        subject: str = "",
        body: str | None = None,
        assigned_users: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.options = options
        self.params = params
        self.defaults = defaults
        self.multiple = multiple
        self.timeout_datetime = timeout_datetime
        self.poke_interval = poke_interval
        self.subject = subject
        self.body = body
        self.assigned_users = assigned_users or []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow.providers.standard.triggers.hitl.HITLTrigger",
            {
                "options": self.options, "params": self.params, "defaults": self.defaults,
                "multiple": self.multiple, "timeout_datetime": self.timeout_datetime,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> Any:
        raise RuntimeError("a HITLTrigger waits in the control plane for an answer; the triggerer never runs it")
        yield  # pragma: no cover - makes this an async generator, as triggers are

    def request(self) -> dict[str, Any]:
        """What the person is asked, as Airflow's `HITLDetail` holds it."""
        return {
            "subject": self.subject, "body": self.body, "options": list(self.options),
            "defaults": self.defaults, "multiple": self.multiple, "params": self.params,
            "assigned_users": self.assigned_users,
        }

    def unanswered(self) -> dict[str, Any]:
        """The event at the deadline, as Airflow's trigger yields it: the defaults chosen, or an
        error without defaults."""
        if self.defaults is None:
            return {"error": "The timeout has passed, and the response has not yet been received.", "error_type": "timeout"}
        return {
            "chosen_options": list(self.defaults),
            "params_input": {name: param.get("value") for name, param in self.params.items()},
            "responded_by_user": None,
            "responded_at": self.timeout_datetime.isoformat() if self.timeout_datetime else None,
            "timedout": True,
        }


def _param(value: Any) -> dict[str, Any]:
    """A param as a HITL request shows it (Airflow's `Param.serialize()`)."""
    if isinstance(value, Param):
        default = value.default if value.has_default() else None
        return {"value": default, "description": value.description, "schema": value.schema, "source": "task"}
    return {"value": value, "description": None, "schema": {}, "source": "task"}


class HITLOperator(BaseOperator):
    """Asks a person to choose among `options` (and fill in `params`), and returns the answer:
    `{"chosen_options": [...], "params_input": {...}, "responded_at", "responded_by_user"}`."""

    custom_class = True
    airflow_module = "airflow.providers.standard.operators.hitl"
    template_fields: Sequence[str] = ("subject", "body")

    def __init__(
        self,
        *,
        subject: str,
        options: list[str],
        body: str | None = None,
        defaults: str | list[str] | None = None,
        multiple: bool = False,
        params: dict[str, Any] | None = None,
        notifiers: Any = None,
        assigned_users: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.subject = subject
        self.body = body
        self.options = options
        self.defaults = [defaults] if isinstance(defaults, str) else defaults
        self.multiple = multiple
        self.hitl_params: dict[str, dict[str, Any]] = {name: _param(value) for name, value in (params or {}).items()}
        self.notifiers: list[BaseNotifier] = [notifiers] if isinstance(notifiers, BaseNotifier) else list(notifiers or [])
        self.assigned_users: list[dict[str, str]] = [assigned_users] if isinstance(assigned_users, dict) else list(assigned_users or [])
        self.validate_options()
        self.validate_params()
        self.validate_defaults()

    def validate_options(self) -> None:
        if not self.options:
            raise ValueError('"options" cannot be empty.')

    def validate_params(self) -> None:
        if "_options" in self.hitl_params:
            raise ValueError('"_options" is not allowed in params')

    def validate_defaults(self) -> None:
        if self.defaults is not None:
            if not set(self.defaults).issubset(self.options):
                raise ValueError(f'defaults "{self.defaults}" should be a subset of options "{self.options}"')
            if self.multiple is False and len(self.defaults) > 1:
                raise ValueError('More than one defaults given when "multiple" is set to False.')

    @property
    def serialized_params(self) -> dict[str, dict[str, Any]]:
        return self.hitl_params

    def execute(self, context: dict[str, Any]) -> Any:
        timeout = self.execution_timeout
        if isinstance(timeout, (int, float)):
            timeout = dt.timedelta(seconds=timeout)
        deadline = dt.datetime.now(dt.timezone.utc) + timeout if timeout else None
        self.log.info("Waiting for response")
        for notifier in self.notifiers:
            notifier(context)
        self.defer(
            trigger=HITLTrigger(
                options=self.options, params=self.serialized_params, defaults=self.defaults,
                multiple=self.multiple, timeout_datetime=deadline, subject=self.subject, body=self.body,
                assigned_users=self.assigned_users,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: dict[str, Any], event: dict[str, Any]) -> Any:
        if "error" in event:
            if event.get("error_type") == "timeout":
                raise HITLTimeoutError(event)
            raise HITLTriggerEventError(event)
        chosen_options = event["chosen_options"]
        params_input = event.get("params_input") or {}
        self.validate_chosen_options(chosen_options)
        self.validate_params_input(params_input)
        return {
            "chosen_options": chosen_options,
            "params_input": params_input,
            "responded_at": event.get("responded_at"),
            "responded_by_user": event.get("responded_by_user"),
        }

    def validate_chosen_options(self, chosen_options: list[str]) -> None:
        if diff := set(chosen_options) - set(self.options):
            raise ValueError(f"Responses {diff} not in {self.options}")

    def validate_params_input(self, params_input: Mapping[str, Any]) -> None:
        if self.hitl_params and params_input and set(self.hitl_params) ^ set(params_input):
            raise ValueError(f"params_input {dict(params_input)} does not match params {sorted(self.hitl_params)}")

    def generate_link_to_ui(
        self, *, task_instance: Any, base_url: str | None = None, options: str | list[str] | None = None,
        params_input: dict[str, Any] | None = None,
    ) -> str:
        """The UI's "required actions" page of the task instance, with options and params
        pre-filled."""
        query: dict[str, Any] = {}
        options = [options] if isinstance(options, str) else options
        if options:
            if diff := set(options) - set(self.options):
                raise ValueError(f"options {diff} are not valid options")
            query["_options"] = options
        if params_input:
            if diff := set(params_input) - set(self.hitl_params):
                raise ValueError(f"params {diff} are not valid params")
            query.update(params_input)
        if not base_url:
            from leoflow.configuration import conf

            base_url = conf.get("api", "base_url", fallback=None)
        if not base_url:
            raise ValueError("Not able to retrieve base_url")
        query["map_index"] = task_instance.map_index
        parsed = urlparse(base_url)
        path = f"/dags/{task_instance.dag_id}/runs/{task_instance.run_id}/tasks/{task_instance.task_id}/required_actions"
        return urlunparse((parsed.scheme, parsed.netloc, path, "", urlencode(query), ""))

    @staticmethod
    def generate_link_to_ui_from_context(
        *, context: dict[str, Any], base_url: str | None = None, options: list[str] | None = None,
        params_input: dict[str, Any] | None = None,
    ) -> str:
        operator = context["task"]
        if not isinstance(operator, HITLOperator):
            raise ValueError("This method only supports HITLOperator")
        return operator.generate_link_to_ui(
            task_instance=context["task_instance"], base_url=base_url, options=options, params_input=params_input
        )


class ApprovalOperator(HITLOperator):
    """Asks "Approve" or "Reject": on "Reject" its direct downstream tasks are skipped (with
    `fail_on_reject`, the task fails instead)."""

    airflow_module = "airflow.providers.standard.operators.hitl"

    branch = True
    FIXED_ARGS = ("options", "multiple")
    APPROVE = "Approve"
    REJECT = "Reject"

    def __init__(self, *, ignore_downstream_trigger_rules: bool = False, fail_on_reject: bool = False, **kwargs: Any) -> None:
        for argument in self.FIXED_ARGS:
            if argument in kwargs:
                raise ValueError(f"Passing {argument} to ApprovalOperator is not allowed.")
        if ignore_downstream_trigger_rules:
            raise UnsupportedConstruct(
                "ApprovalOperator(ignore_downstream_trigger_rules=True)",
                "a rejection skips the direct downstream tasks, and their trigger rules decide the rest",
            )
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules
        self.fail_on_reject = fail_on_reject
        super().__init__(options=[self.APPROVE, self.REJECT], multiple=False, **kwargs)

    def execute_complete(self, context: dict[str, Any], event: dict[str, Any]) -> Any:
        answer = super().execute_complete(context, event)
        chosen = answer["chosen_options"][0]
        if chosen == self.APPROVE:
            self.log.info("Approved. Proceeding with downstream tasks...")
        elif self.fail_on_reject:
            raise HITLRejectException('Receive "Reject"')
        else:
            self.log.info("Skipping downstream tasks")
        return answer

    def followed(self, answer: dict[str, Any]) -> list[str]:
        """The direct downstream tasks that run: all on "Approve", none on "Reject"."""
        return direct_downstream(self) if answer["chosen_options"][0] == self.APPROVE else []


class HITLBranchOperator(HITLOperator):
    """Follows the chosen options: task ids, or what `options_mapping` maps them to."""

    airflow_module = "airflow.providers.standard.operators.hitl"

    branch = True

    def __init__(self, *, options_mapping: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options_mapping = options_mapping or {}
        if invalid := set(self.options_mapping) - set(self.options):
            raise ValueError(f"`options_mapping` contains keys that are not in `options`: {sorted(invalid)}")
        if invalid_values := {k: (v, type(v).__name__) for k, v in self.options_mapping.items() if not isinstance(v, str)}:
            raise ValueError(f"`options_mapping` values must be strings (task_ids).\nInvalid entries: {invalid_values}")

    def execute_complete(self, context: dict[str, Any], event: dict[str, Any]) -> Any:
        answer = super().execute_complete(context, event)
        return [self.options_mapping.get(option, option) for option in answer["chosen_options"]]


class HITLEntryOperator(HITLOperator):
    """A form to fill in (its `params`), answered with "OK"."""

    airflow_module = "airflow.providers.standard.operators.hitl"

    OK = "OK"

    def __init__(self, **kwargs: Any) -> None:
        if "options" not in kwargs:
            kwargs["options"] = [self.OK]
            kwargs.setdefault("defaults", [self.OK])
        super().__init__(**kwargs)


__all__ = [
    "ApprovalOperator", "BaseNotifier", "HITLBranchOperator", "HITLEntryOperator", "HITLOperator",
    "HITLRejectException", "HITLTimeoutError", "HITLTrigger", "HITLTriggerEventError", "TriggerEvent",
]
