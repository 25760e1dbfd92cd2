"""Steps, jobs and Definitions: what the decorator records and what loading refuses."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from vigil import errors, partitions
from vigil.definitions import definitions, job, step
from vigil.evaluation import evaluate


class LoadConfig(pydantic.BaseModel):
    rows: int
    table: str = "orders"


class Defaults(pydantic.BaseModel):
    limit: int = 10


@step.step
def extract() -> list[int]:
    """Read the rows."""
    return [1, 2, 3]


@step.step(name="clean", retry=step.RetryPolicy(max_retries=2), description="Drop bad rows.")
def clean_rows(context: Any, extract: list[int]) -> list[int]:
    return [r for r in extract if r > 1]


@step.step
def load(config: LoadConfig, clean: list[int]) -> int:
    return config.rows + len(clean)


@step.step
def tune(config: Defaults) -> int:
    return config.limit


def etl() -> job.JobDef:
    return job.job("etl", [load, extract, clean_rows, tune], tags={"team": "data"})


# --- steps ---------------------------------------------------------------------------------


def test_bare_decorator_records_name_inputs_and_docstring() -> None:
    assert isinstance(extract, step.StepDef)
    assert extract.name == "extract"
    assert extract.inputs == ()
    assert extract.description == "Read the rows."
    assert extract.retry is None
    assert not extract.wants_context
    assert extract.config_model is None


def test_decorator_with_arguments_and_parameter_conventions() -> None:
    assert clean_rows.name == "clean"
    assert clean_rows.inputs == ("extract",)
    assert clean_rows.wants_context
    assert clean_rows.retry == step.RetryPolicy(max_retries=2)
    assert clean_rows.description == "Drop bad rows."
    assert clean_rows.fn.__name__ == "clean_rows"


def test_config_annotation_is_resolved_under_future_annotations() -> None:
    assert load.config_model is LoadConfig
    assert load.inputs == ("clean",)


def test_a_step_can_still_be_called_directly() -> None:
    assert extract() == [1, 2, 3]
    assert load(config=LoadConfig(rows=1), clean=[5]) == 2


def test_invoke_passes_context_config_and_inputs_by_name() -> None:
    assert load.invoke(None, LoadConfig(rows=2), {"clean": [1, 2]}) == 4
    assert clean_rows.invoke(object(), None, {"extract": [1, 2, 3]}) == [2, 3]


def test_var_args_are_refused_naming_the_step() -> None:
    with pytest.raises(errors.DefinitionError, match=r"step 'spread'.*'rows'"):

        @step.step
        def spread(*rows: int) -> None:
            pass


def test_var_kwargs_are_refused() -> None:
    with pytest.raises(errors.DefinitionError, match="step 'anything'"):

        @step.step
        def anything(**kwargs: int) -> None:
            pass


def test_config_without_annotation_is_refused() -> None:
    with pytest.raises(errors.DefinitionError, match=r"step 'untyped'.*'config'.*BaseModel"):

        @step.step
        def untyped(config) -> None:  # type: ignore[no-untyped-def]
            pass


def test_config_annotated_with_a_non_model_is_refused() -> None:
    with pytest.raises(errors.DefinitionError, match=r"step 'wrong'.*BaseModel"):

        @step.step
        def wrong(config: dict[str, int]) -> None:
            pass


def test_config_annotation_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(errors.DefinitionError, match=r"step 'ghost'.*cannot resolve"):

        @step.step
        def ghost(config: NoSuchModel) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass


def test_a_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(errors.DefinitionError, match="not a valid identifier"):
        step.step(name="load-data")(lambda: None)


@pytest.mark.parametrize(
    "field", [{"max_retries": -1}, {"delay": -0.5}, {"backoff": -2.0}, {"jitter": -0.1}]
)
def test_retry_policy_refuses_negative_values(field: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        step.RetryPolicy(**field)


def test_retry_policy_defaults_and_is_frozen() -> None:
    policy = step.RetryPolicy()
    assert (policy.max_retries, policy.delay, policy.backoff, policy.jitter) == (0, 0.0, 1.0, 0.0)
    with pytest.raises(pydantic.ValidationError):
        policy.max_retries = 3  # type: ignore[misc]


# --- jobs ----------------------------------------------------------------------------------


def test_job_orders_steps_topologically_stable_by_declaration() -> None:
    built = etl()
    assert built.topological_order() == ("extract", "clean", "load", "tune")
    assert list(built.steps) == ["extract", "clean", "load", "tune"]
    assert dict(built.tags) == {"team": "data"}


def test_independent_steps_keep_declaration_order() -> None:
    @step.step
    def b() -> int:
        return 1

    @step.step
    def a() -> int:
        return 2

    @step.step
    def c(a: int, b: int) -> int:
        return a + b

    assert job.job("j", [c, b, a]).topological_order() == ("b", "a", "c")


def test_upstream_downstream_and_closure() -> None:
    built = etl()
    assert built.upstream("load") == ("clean",)
    assert built.downstream("extract") == ("clean",)
    assert built.downstream_closure(["clean"]) == ("clean", "load")
    assert built.downstream_closure(["extract", "tune"]) == ("extract", "clean", "load", "tune")
    with pytest.raises(errors.NotFound, match="no step named 'nope'"):
        built.upstream("nope")


def test_duplicate_step_names_are_refused() -> None:
    with pytest.raises(errors.DefinitionError, match="job 'etl' has two steps named 'extract'"):
        job.job("etl", [extract, extract])


def test_missing_input_is_refused_with_the_exact_message() -> None:
    @step.step
    def report(cleaned: list[int]) -> None:
        pass

    message = (
        "step 'report' of job 'etl' takes input 'cleaned' but the job has no step named 'cleaned'"
    )
    with pytest.raises(errors.DefinitionError) as caught:
        job.job("etl", [extract, report])
    assert str(caught.value) == message


def test_a_cycle_is_refused_naming_its_steps() -> None:
    @step.step
    def first(third: int) -> int:
        return third

    @step.step
    def second(first: int) -> int:
        return first

    @step.step
    def third(second: int) -> int:
        return second

    with pytest.raises(errors.DefinitionError, match="cycle") as caught:
        job.job("loop", [extract, first, second, third])
    assert "first -> second -> third -> first" in str(caught.value)
    assert "extract" not in str(caught.value)


def test_a_step_taking_its_own_output_is_a_cycle() -> None:
    @step.step
    def selfish(selfish: int) -> int:
        return selfish

    with pytest.raises(errors.DefinitionError, match="selfish -> selfish"):
        job.job("j", [selfish])


def test_a_non_step_in_a_job_is_refused() -> None:
    with pytest.raises(errors.DefinitionError, match="not a step"):
        job.job("j", [extract, print])  # type: ignore[list-item]


def test_a_job_declares_its_partitions_and_its_info_describes_them() -> None:
    daily = partitions.daily_partitions("2024-01-01", timezone="Europe/Paris")
    made = job.job("daily_etl", [extract], partitions=daily)
    assert made.partitions == daily
    info = evaluate.job_info(made)
    assert info.partitions == daily.describe()
    assert info.partitions_def() == daily
    assert evaluate.job_info(etl()).partitions is None


def test_partitions_that_are_not_a_partitions_def_are_refused() -> None:
    with pytest.raises(errors.DefinitionError, match="job 'j': partitions must come from"):
        job.job("j", [extract], partitions=["eu", "us"])  # type: ignore[arg-type]


# --- run config ----------------------------------------------------------------------------


def test_run_config_validates_each_step_and_defaults_the_rest() -> None:
    configs = etl().validate_run_config({"steps": {"load": {"rows": "5"}}})
    assert configs == {
        "extract": None,
        "clean": None,
        "load": LoadConfig(rows=5),
        "tune": Defaults(),
    }


def test_a_bad_field_names_the_full_key_path() -> None:
    with pytest.raises(errors.RunConfigError) as caught:
        etl().validate_run_config({"steps": {"load": {"rows": "abc"}}})
    assert str(caught.value) == (
        "run config: steps.load.rows: Input should be a valid integer (got 'abc')"
    )


def test_a_missing_required_config_is_an_error() -> None:
    with pytest.raises(errors.RunConfigError, match=r"steps\.load\.rows: Field required"):
        etl().validate_run_config({})


def test_unknown_top_level_key_is_an_error() -> None:
    with pytest.raises(errors.RunConfigError, match="unknown key 'step'"):
        etl().validate_run_config({"step": {}})


def test_unknown_step_is_an_error() -> None:
    with pytest.raises(errors.RunConfigError, match=r"steps.lode: job 'etl' has no step"):
        etl().validate_run_config({"steps": {"load": {"rows": 1}, "lode": {}}})


def test_config_for_a_step_without_a_model_is_an_error() -> None:
    with pytest.raises(errors.RunConfigError, match=r"steps.extract: step 'extract' takes no"):
        etl().validate_run_config({"steps": {"load": {"rows": 1}, "extract": {"x": 1}}})


def test_steps_section_must_be_a_mapping() -> None:
    with pytest.raises(errors.RunConfigError, match="steps: should be a mapping"):
        etl().validate_run_config({"steps": ["load"]})


def test_a_step_config_that_is_not_a_mapping_names_the_step() -> None:
    with pytest.raises(errors.RunConfigError, match=r"steps\.load: "):
        etl().validate_run_config({"steps": {"load": 3}})


# --- Definitions ---------------------------------------------------------------------------


def test_definitions_find_jobs_by_name() -> None:
    defs = definitions.Definitions(jobs=[etl(), job.job("one", [extract])])
    assert defs.job_names == ("etl", "one")
    assert defs.get_job("one").name == "one"
    assert defs.schedules == ()
    assert defs.sensors == ()


def test_unknown_job_lists_the_known_ones() -> None:
    defs = definitions.Definitions(jobs=[etl(), job.job("one", [extract])])
    with pytest.raises(errors.UnknownJob, match=r"no job named 'two' \(known jobs: etl, one\)"):
        defs.get_job("two")


def test_duplicate_job_names_are_refused() -> None:
    with pytest.raises(errors.DefinitionError, match="two jobs are named 'etl'"):
        definitions.Definitions(jobs=[etl(), etl()])


def test_only_the_config_annotation_needs_to_resolve() -> None:
    @step.step
    def typed_elsewhere(context: OnlyForTypeCheckers, config: Defaults) -> int:  # type: ignore[name-defined]  # noqa: F821
        return config.limit

    assert typed_elsewhere.config_model is Defaults
    assert typed_elsewhere.wants_context
