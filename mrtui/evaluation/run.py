"""Evaluating the model of each iteration: answer each suite's items, then check the answers
(IFEval's rules) or have a judge grade them, every answer and verdict a resumable unit in the
run's log.

The model that served iteration t is evaluated as iteration t (M_1 is the run's base model,
M_t for t > 1 the checkpoint iteration t-1 trained). Units go through the loop's own stage
machinery (:class:`~mrtui.loop.stages.Stages`): deterministic keys, skipped when logged,
failures logged and retried on resume, provenance on every event. All answers of an iteration
come first, so the evaluated model is loaded once; the judge model (alpaca_eval, mt_bench) is
loaded once for every iteration's verdicts. Each stage sends all its requests to the backend
in one call; on llama.cpp they are decoded :data:`EVAL_PARALLEL` at a time unless the run set
its own ``parallel``.

An answer is never generated twice: one whose :func:`answer_key` (model, rendered request,
template, sampling) the log already holds, from any run or iteration, is logged as a copy of
that answer (``cached_from``) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from mrtui.backends.base import (
    BackendInfo,
    Completion,
    InferenceBackend,
    Message,
    Request,
    SamplingParams,
)
from mrtui.datasets.evalsets import MT_BENCH_REFERENCE_CATEGORIES
from mrtui.loop.progress import CancelToken, Note, ProgressSink, UnitsDone
from mrtui.loop.prompts import (
    RESPONSE_WINNER_LINE,
    Template,
    load_template,
    parse_score,
    parse_winner,
)
from mrtui.loop.settings import IterationSettings
from mrtui.loop.stages import (
    SCORE_CHOICES,
    SCORE_LEAD,
    AnswerKind,
    Finish,
    Followup,
    ModelIdentity,
    Outcome,
    StageReport,
    Stages,
    final_line,
    unit_seed,
)
from mrtui.store import EventLog, content_key
from mrtui.store import events as ev

from .arena import Battle, against_baseline, judge_against
from .settings import JUDGED, SUITE_SETS, EvalConfigError, EvalSettings

if TYPE_CHECKING:
    from mrtui.loop.runner import Runner

RESPONSE_LEAD = "Winner: Response "
PAIR_CHOICES = ("A", "B")
GRADE_CHOICES = tuple(str(i) for i in range(1, 11))

# How many answers llama.cpp decodes together in an evaluation whose run set no ``parallel``
# backend option (bench/RESULTS.md, section eval). vLLM and the servers take a stage's
# requests at once anyway.
EVAL_PARALLEL = 16
EVAL_BACKEND_OPTIONS: dict[str, dict[str, Any]] = {"llama.cpp": {"parallel": EVAL_PARALLEL}}


def eval_backend_options(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options an evaluation adds to a backend's ``options``: those of
    :data:`EVAL_BACKEND_OPTIONS` that ``options`` does not set itself."""
    return {k: v for k, v in EVAL_BACKEND_OPTIONS.get(backend, {}).items() if k not in options}


def answer_key(model_sha256: str, template_sha256: str, request: Request) -> str:
    """The answer cache's key: what makes two answers the same answer. The model, the
    template, the request as sent (its rendered messages and any prefix or constraint) and
    its sampling; the seed only when sampling (greedy decoding does not use it), so a greedy
    answer is shared by every run and iteration that asks the same model the same thing."""
    params = request.params.to_dict()
    if request.params.temperature == 0:
        params.pop("seed", None)
    return content_key(
        "evans",
        model_sha256,
        template_sha256,
        [[m.role, m.content] for m in request.messages],
        request.assistant_prefix,
        request.structure.to_dict() if request.structure is not None else None,
        request.choices,
        request.choice_probs,
        params,
    )


@dataclass(frozen=True)
class EvalItem:
    suite: str
    eval_set: str
    id: str
    key: str
    stratum: str
    turns: tuple[str, ...]
    record: Mapping[str, Any]

    def reference(self, turn: int = 0) -> str | None:
        """The reference answer of a turn: AlpacaEval's baseline (GPT-4-1106), which win rates
        compare against; MT-Bench's GPT-4 answer for math, reasoning and coding questions,
        which the grader checks against."""
        if self.eval_set == "alpaca_eval":
            out = self.record.get("output")
            return out if isinstance(out, str) else None
        if self.eval_set == "mt_bench" and self.stratum in MT_BENCH_REFERENCE_CATEGORIES:
            from mrtui.datasets.evalsets import mt_bench_references

            turns = mt_bench_references().get(self.id, ())
            return turns[turn] if turn < len(turns) else None
        return None


def item_key(eval_set: str, item_id: str) -> str:
    return content_key("evitem", eval_set, item_id)


@cache
def _items(suite: str, limit: int | None) -> tuple[EvalItem, ...]:
    from mrtui.datasets.evalsets import load_eval_set

    from .subset import stratified, stratum_of

    name = SUITE_SETS[suite]
    prompts = stratified(
        load_eval_set(name),
        limit,
        stratum=lambda p: stratum_of(name, p.record),
        ident=lambda p: p.id,
        salt=name,
    )
    return tuple(
        EvalItem(
            suite, name, p.id, item_key(name, p.id), stratum_of(name, p.record), p.turns, p.record
        )
        for p in prompts
    )


def items(suite: str, limit: int | None) -> list[EvalItem]:
    """The items a suite evaluates: all of them, or a deterministic stratified subset."""
    return list(_items(suite, limit))


class EvalStages(Stages):
    """The loop's stage machinery for evaluation units. Stage names are ``suite/step``; each
    step's template is ``templates[step]``."""

    def __init__(
        self,
        log: EventLog,
        run_id: str,
        iteration: int,
        model: ModelIdentity,
        backend: Callable[[], InferenceBackend],
        templates: dict[str, Template],
        progress: ProgressSink,
        cancel: CancelToken,
    ) -> None:
        super().__init__(
            log, run_id, iteration, IterationSettings(), model, templates, backend, progress, cancel
        )

    def template_for(self, stage: str) -> Template:
        return self.templates[_step(stage)]

    def run_units(
        self, stage: str, todo: Sequence[tuple[Request, Finish]], report: StageReport
    ) -> None:
        """Answers the log holds already (the same :func:`answer_key`) are copied, not
        generated; a request that repeats another of the stage waits for that one's answer."""
        if _step(stage) != "answer":
            super().run_units(stage, todo, report)
            return
        keys = {
            r.id: answer_key(self.model.sha256, self.templates["answer"].sha256, r) for r, _ in todo
        }
        first: dict[str, tuple[Request, Finish]] = {}
        repeats = []
        for request, finish in self._reuse(stage, todo, keys, report):
            if keys[request.id] in first:
                repeats.append((request, finish))
            else:
                first[keys[request.id]] = (request, finish)
        if first and not self.cancel.cancelled:
            super().run_units(stage, list(first.values()), report)
        if repeats and not self.cancel.cancelled:
            left = self._reuse(stage, repeats, keys, report)
            if left and not self.cancel.cancelled:  # their first failed: generate them too
                super().run_units(stage, left, report)

    def _reuse(
        self,
        stage: str,
        todo: Sequence[tuple[Request, Finish]],
        keys: Mapping[str, str],
        report: StageReport,
    ) -> list[tuple[Request, Finish]]:
        """Log a copy of the earliest generated answer with each unit's answer key, where the
        log has one; return the units it has none for."""
        wanted = sorted({keys[r.id] for r, _ in todo})
        rows = (
            self.log.query(
                "SELECT answer_key, sample_key, response, finish_reason, prompt_tokens, "
                "completion_tokens, model_id, backend, backend_version FROM eval_generations "
                "WHERE cached_from IS NULL AND answer_key IN (SELECT unnest(?::VARCHAR[])) "
                "QUALIFY row_number() OVER (PARTITION BY answer_key ORDER BY seq) = 1",
                [wanted],
            )
            if wanted
            else []
        )
        found = {row[0]: row[1:] for row in rows}
        template = self.template_for(stage)
        left, copies = [], []
        for request, finish in todo:
            hit = found.get(keys[request.id])
            if hit is None:
                left.append((request, finish))
                continue
            source, text, reason, prompt_tokens, tokens, model_id, backend, version = hit
            answer = Completion(
                request.id, 0, text or "", reason or "stop", prompt_tokens or 0, tokens or 0,
                prompt_tokens_evaluated=0, seed=request.params.seed, wall_s=0.0,
            )  # fmt: skip
            outcome = finish(answer)
            assert not isinstance(outcome, Followup)  # answers have no follow-up request
            info = BackendInfo(backend, version or "", model_id, None, self.model.sha256, None)
            prov = self.provenance(info, template, request, answer)
            assert outcome.record is ev.EvalSampleGenerated  # run_units: answers only
            record = ev.EvalSampleGenerated(**outcome.fields, **prov, cached_from=source)
            copies.append(
                record.event(
                    self.run_id,
                    iteration=self.iteration,
                    key=request.id,
                    parent_key=outcome.parent_key,
                    text=outcome.text,
                )
            )
        if copies:
            self.log.append(copies)
            report.done += len(copies)
            for _ in copies:
                self.progress(UnitsDone(self.iteration, stage))
            self.progress(
                Note(f"{stage}: {len(copies)} answers copied from the log (same model and request)")
            )
        return left


def _step(stage: str) -> str:
    """The template role of an evaluation stage ``suite/step`` (answer2 -> answer)."""
    return stage.rsplit("/", 1)[-1].rstrip("0123456789")


class Evaluation:
    """Evaluates iterations of the run ``runner`` drives (its log, settings and backends)."""

    def __init__(self, runner: Runner, settings: EvalSettings) -> None:
        self.runner = runner
        self.es = settings
        self.log = runner.log
        self.run_id = runner.settings.run_id
        self._judge: InferenceBackend | None = None
        self._judge_model: ModelIdentity | None = None

    # -- what there is to evaluate --------------------------------------------------------
    def available(self) -> list[int]:
        """Iterations whose model exists: 1 (the base model) and every trained checkpoint's."""
        rows = self.log.query(
            "SELECT DISTINCT for_iteration FROM checkpoints WHERE run_id = ?", [self.run_id]
        )
        return sorted({1, *(r[0] for r in rows)})

    def judge_model(self) -> ModelIdentity:
        if self._judge_model is None:
            assert self.es.judge_model
            self._judge_model = self.runner.resolve(self.es.judge_model)
        return self._judge_model

    def _judge_backend(self) -> InferenceBackend:
        if self._judge is None:
            judge = self.judge_model()
            self.runner.progress(Note(f"loading judge {judge.model_id}"))
            assert self.es.judge_model
            settings = self.runner.settings
            if self.es.judge_backend and self.es.judge_backend != settings.backend:
                settings = replace(settings, backend=self.es.judge_backend, backend_options={})
            extra = eval_backend_options(settings.backend, settings.backend_options)
            settings = replace(settings, backend_options={**settings.backend_options, **extra})
            self._judge = self.runner.open_backend(settings, self.es.judge_model)
        return self._judge

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()
            self._judge = None

    # -- running --------------------------------------------------------------------------
    def run(self, iterations: Sequence[int]) -> list[StageReport]:
        """Evaluate each iteration's model; answers first, then the fixed judge's verdicts."""
        reports: list[StageReport] = []
        try:
            for iteration in iterations:
                reports += self.evaluate(iteration)
                if self.runner.cancel.cancelled:
                    break
        finally:
            self.close()
        return reports

    def evaluate(self, iteration: int) -> list[StageReport]:
        checkpoint = self.runner.checkpoint_for(iteration)
        model = ModelIdentity(
            checkpoint.model_id, checkpoint.sha256, checkpoint.gguf_path or checkpoint.hf_dir
        )
        judged = [s for s in self.es.suites if s in JUDGED]
        if judged and self.judge_model().sha256 == model.sha256 and not self.es.allow_self_judge:
            raise EvalConfigError(
                f"the judge {self.es.judge_model} is the model under evaluation (iteration "
                f"{iteration}); pass another --judge-model, or --allow-self-judge to use it"
            )
        run = self.runner.settings
        options = eval_backend_options(run.backend, run.backend_options)
        own = self._stages(iteration, model, lambda: self.runner.backend_on(checkpoint, options))
        reports: list[StageReport] = []
        for suite in self.es.suites:
            if self.runner.cancel.cancelled:
                return reports
            chosen = items(suite, self.es.limit)
            if suite == "judge-ifeval":
                reports.append(
                    self._answer(own, suite, chosen, self.es.pair_samples, self.es.pair_temperature)
                )
            else:
                reports.append(self._answer(own, suite, chosen))
            if suite == "mt_bench" and not self.runner.cancel.cancelled:
                reports.append(self._answer(own, suite, chosen, turn=1))
            if suite in ("ifeval", "judge-ifeval"):
                self._check(suite, iteration, model.sha256)
            if suite == "judge-ifeval" and not self.runner.cancel.cancelled:
                reports += self._judge_pairs(own, iteration, model.sha256)
        if judged and not self.runner.cancel.cancelled:
            judge = self._stages(iteration, self.judge_model(), self._judge_backend)
            for suite in judged:
                if self.runner.cancel.cancelled:
                    break
                if suite == "alpaca_eval":
                    reports.append(self._against_reference(judge, suite, model.sha256))
                elif suite == "arena_hard":
                    reports += against_baseline(self, judge, model.sha256)
                else:
                    reports += self._grade(judge, suite, model.sha256)
        return reports

    def _stages(
        self, iteration: int, model: ModelIdentity, backend: Callable[[], InferenceBackend]
    ) -> EvalStages:
        s = self.runner.settings.for_iteration(iteration)
        templates = {
            "answer": load_template("eval_answer"),
            "pairwise": load_template("eval_pairwise"),
            "grade": load_template("eval_grade"),
            "grade_ref": load_template("eval_grade_ref"),
            "rubric": load_template(s.judge_template),
        }
        return EvalStages(
            self.log,
            self.run_id,
            iteration,
            model,
            backend,
            templates,
            self.runner.progress,
            self.runner.cancel,
        )

    def _params(self, key: str, *, judge: bool, temperature: float = 0.0) -> SamplingParams:
        """Sampling of a verdict (``judge``) or an answer; the seed comes from ``key``."""
        return SamplingParams(
            n=1,
            temperature=temperature,
            top_p=1.0 if temperature == 0 else 0.95,
            max_tokens=self.es.judge_max_tokens if judge else self.es.max_tokens,
            seed=unit_seed(self.es.seed, key),
        )

    # -- answers --------------------------------------------------------------------------
    def _answer(
        self,
        stages: EvalStages,
        suite: str,
        chosen: Sequence[EvalItem],
        samples: int = 1,
        temperature: float = 0.0,
        turn: int = 0,
    ) -> StageReport:
        tpl = stages.templates["answer"]
        sampling = [self.es.max_tokens, temperature, self.es.seed]
        key = stages.keyer("evsmp", suite, tpl.sha256, sampling)
        earlier: dict[str, tuple[str, str]] = {}
        if turn > 0:
            for sk, ik, text in self._samples(stages, suite, turn - 1, "sample_key, item_key"):
                earlier[ik] = (sk, text)
        planned = [
            (key(item.key, turn, s), (item, s))
            for item in chosen
            if len(item.turns) > turn and (turn == 0 or item.key in earlier)
            for s in range(samples)
        ]

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            item, s = args
            messages: tuple[Message, ...] = ()
            parent = item.key
            if turn > 0:
                parent, before = earlier[item.key]
                messages = (Message("user", item.turns[0]), Message("assistant", before))
            text = item.turns[turn]
            messages += (Message("user", tpl.render(prompt=text)),)
            stages.about(key, parent, item.key)
            # the seed depends on what is asked, not on the run, so a sampled answer (judge-ifeval)
            # is the same in every run and iteration of the same model, and can be reused
            seed_key = content_key("evseed", item.key, turn, s)
            request = Request(
                key, messages, self._params(seed_key, judge=False, temperature=temperature)
            )
            fields = {
                "suite": suite,
                "eval_set": item.eval_set,
                "item_id": item.id,
                "item_key": item.key,
                "stratum": item.stratum,
                "turn": turn,
                "sample_index": s,
                "prompt": text,
                "reference": item.reference(turn),
                "answer_key": answer_key(stages.model.sha256, tpl.sha256, request),
            }

            def finish(c: Completion) -> Outcome:
                return Outcome(ev.EvalSampleGenerated, fields, parent, c.text)

            return request, finish

        step = "answer" if turn == 0 else f"answer{turn + 1}"
        return stages.execute(f"{suite}/{step}", planned, build)

    def _samples(self, stages: EvalStages, suite: str, turn: int, columns: str) -> list[Any]:
        """This iteration's answers of ``suite`` by the stages' model: ``columns``, response."""
        return self.log.query(
            f"SELECT {columns}, response FROM eval_generations WHERE run_id = ? AND "
            "iteration = ? AND suite = ? AND turn = ? AND model_sha256 = ? ORDER BY seq",
            [self.run_id, stages.iteration, suite, turn, stages.model.sha256],
        )

    def _check(self, suite: str, iteration: int, model_sha: str) -> None:
        """IFEval's rule checks of every answer that has none from this checker yet."""
        from mrtui.datasets.evalsets import load_eval_set

        from .ifeval import check, checker_version

        version = checker_version()
        rows = self.log.query(
            "SELECT sample_key, item_id, item_key, response FROM eval_generations "
            "WHERE run_id = ? AND iteration = ? AND suite = ? AND model_sha256 = ? ORDER BY seq",
            [self.run_id, iteration, suite, model_sha],
        )
        done = self.log.completed_keys()
        records = {p.id: p.record for p in load_eval_set(SUITE_SETS[suite])}
        new = []
        for sample_key, item_id, ikey, response in rows:
            key = content_key("evchk", sample_key, version)
            if key in done:
                continue
            result = check(records[item_id], response or "")
            record = ev.EvalChecked(
                suite=suite,
                item_key=ikey,
                checker=version,
                instruction_ids=list(result.instruction_ids),
                strict=list(result.strict),
                loose=list(result.loose),
                skipped=dict(result.skipped),
                passed_strict=result.passed_strict,
                passed_loose=result.passed_loose,
            )
            new.append(
                record.event(self.run_id, iteration=iteration, key=key, parent_key=sample_key)
            )
        if new:
            self.log.append(new)
            self.runner.progress(Note(f"iteration {iteration}: checked {len(new)} {suite} answers"))

    # -- verdicts -------------------------------------------------------------------------
    def _verdict(
        self,
        stages: EvalStages,
        step: str,
        key: str,
        parent: str,
        fields: dict[str, Any],
        text: str,
    ) -> tuple[Request, Finish]:
        """A judge request of kind ``step`` (pairwise, grade, rubric) and how to log its answer."""
        choices: tuple[str, ...]
        cast: Callable[[str], Any]
        if step == "pairwise":
            lead, choices, value, cast = RESPONSE_LEAD, PAIR_CHOICES, "winner", str
            parse: Callable[[str], Any] = lambda t: parse_winner(t, RESPONSE_WINNER_LINE)  # noqa: E731
            kind = "response-winner"
        elif step.startswith("grade"):
            lead, choices, value, cast, kind = SCORE_LEAD, GRADE_CHOICES, "score", int, "score"
            parse = lambda t: parse_score(t, low=1, high=10)  # noqa: E731
        else:
            lead, choices, value, cast, kind = SCORE_LEAD, SCORE_CHOICES, "score", int, "score"
            parse = parse_score
        structure = (
            final_line(lead, choices, self.es.rationale_max_chars) if self.es.structured else None
        )
        request = Request(
            key,
            (Message("user", text),),
            self._params(key, judge=True),
            structure=structure,
        )
        fields = {**fields, "mode": "grade" if step.startswith("grade") else step}
        answer = AnswerKind(
            step, ev.EvalJudged, value, lead, choices, cast, kind, "judge",
            rationale_setting="pairwise_rationale" if step == "pairwise" else "judge_rationale",
        )  # fmt: skip
        finish = stages.finisher(answer, request, parent, fields, parse, True)
        return request, finish

    def _judge_keyer(self, stages: EvalStages, suite: str, step: str) -> Callable[..., str]:
        sampling = [self.es.judge_max_tokens, self.es.seed, self.es.structured]
        if self.es.structured:
            sampling.append(self.es.rationale_max_chars)
        return stages.keyer("evjdg", suite, step, stages.templates[step].sha256, sampling)

    def _against_reference(self, judge: EvalStages, suite: str, model_sha: str) -> StageReport:
        """Each answer against the reference answer, in both orders."""
        rows = self.log.query(
            "SELECT sample_key, item_key, prompt, response, reference FROM eval_generations "
            "WHERE run_id = ? AND iteration = ? AND suite = ? AND model_sha256 = ? "
            "AND reference IS NOT NULL ORDER BY seq",
            [self.run_id, judge.iteration, suite, model_sha],
        )
        battles = [Battle(sk, ik, q, a, ev.REFERENCE, ref) for sk, ik, q, a, ref in rows]
        return judge_against(self, judge, suite, battles)

    def _grade(self, judge: EvalStages, suite: str, model_sha: str) -> list[StageReport]:
        """A 1-10 grade of every answer (MT-Bench); a second turn is graded in context, and
        an answer with a reference answer (math, reasoning, coding) against it."""
        rows = self.log.query(
            "SELECT g.sample_key, g.item_key, g.turn, g.prompt, g.response, g.reference, "
            "p.prompt AS first_prompt, p.response AS first_response FROM eval_generations g "
            "LEFT JOIN eval_generations p ON p.sample_key = g.parent_key "
            "WHERE g.run_id = ? AND g.iteration = ? AND g.suite = ? AND g.model_sha256 = ? "
            "ORDER BY g.seq",
            [self.run_id, judge.iteration, suite, model_sha],
        )
        reports = []
        for step in ("grade", "grade_ref"):
            tpl = judge.templates[step]
            key = self._judge_keyer(judge, suite, step)
            with_ref = step == "grade_ref"
            planned = [(key(r[0]), r) for r in rows if (r[5] is not None) == with_ref]

            def build(
                key: str, args: tuple[Any, ...], tpl: Template = tpl, step: str = step
            ) -> tuple[Request, Finish]:
                sk, ik, turn, prompt, response, reference, first_prompt, first_response = args
                judge.about(key, sk, ik)
                question = f"User: {prompt}"
                if turn > 0:
                    question = f"User: {first_prompt}\n\nAssistant: {first_response}\n\n{question}"
                values = {"question": question, "response": response}
                if reference is not None:
                    values["reference"] = reference
                text = tpl.render(**values)
                fields = {"suite": suite, "prompt_key": ik}
                return self._verdict(judge, step, key, sk, fields, text)

            if planned and not self.runner.cancel.cancelled:
                reports.append(judge.execute(f"{suite}/{step}", planned, build))
        return reports

    def _judge_pairs(self, own: EvalStages, iteration: int, model_sha: str) -> list[StageReport]:
        """The model judges its own verifiable pairs: each response with the run's judge
        prompt, and the pair in both orders."""
        suite = "judge-ifeval"
        pairs = self.log.query(
            "SELECT p.item_key, p.prompt, p.pass_key, a.response, p.fail_key, b.response "
            "FROM eval_ifeval_pairs p JOIN eval_generations a ON a.sample_key = p.pass_key "
            "JOIN eval_generations b ON b.sample_key = p.fail_key "
            "WHERE p.run_id = ? AND p.iteration = ? AND p.model_sha256 = ? ORDER BY p.item_key",
            [self.run_id, iteration, model_sha],
        )
        self.runner.progress(Note(f"iteration {iteration}: {len(pairs)} verifiable pairs"))
        rubric_tpl, pair_tpl = own.templates["rubric"], own.templates["pairwise"]
        rkey = self._judge_keyer(own, suite, "rubric")
        singles = {}
        for ik, prompt, pk, pr, fk, fr in pairs:
            singles[pk] = (ik, prompt, pr)
            singles[fk] = (ik, prompt, fr)
        planned = [(rkey(sk), (sk, *v)) for sk, v in singles.items()]

        def build_rubric(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            sk, ik, prompt, response = args
            own.about(key, sk, ik)
            text = rubric_tpl.render(question=prompt, response=response)
            return self._verdict(own, "rubric", key, sk, {"suite": suite, "prompt_key": ik}, text)

        reports = [own.execute(f"{suite}/rubric", planned, build_rubric)]
        pkey = self._judge_keyer(own, suite, "pairwise")
        ordered = []
        for ik, prompt, pk, pr, fk, fr in pairs:
            ordered.append((pkey(pk, fk), (ik, prompt, pk, pr, fk, fr)))
            ordered.append((pkey(fk, pk), (ik, prompt, fk, fr, pk, pr)))

        def build_pair(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            ik, prompt, first, a, second, b = args
            own.about(key, first, ik)
            text = pair_tpl.render(question=prompt, response_a=a, response_b=b)
            fields = {"suite": suite, "prompt_key": ik, "first_key": first, "second_key": second}
            return self._verdict(own, "pairwise", key, first, fields, text)

        if not self.runner.cancel.cancelled:
            reports.append(own.execute(f"{suite}/pairwise", ordered, build_pair))
        return reports
