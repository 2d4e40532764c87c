"""Tests of the review desk (admin) and the run report pages.

Test data is built with the ORM here (no LLM pipeline): :func:`review_data_build` makes an HPO
phenotype run with four clusters (validated, pending, rejected, no summary) and a GO functional
run with two clusters, each with enrichment terms, summaries, judge events and a run job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.models import Permission, User

from clustering.domain.hashing import composition_hash
from clustering.models import Cluster, ClusteringRun, Dataset, RunStatus, TermEnrichment
from llm.models import ClusterSummary, GenerationJob, JobStatus, ValidationEvent

PASSWORD = "correct horse battery staple"

HPO_LICENCE = (
    "This service uses the Human Phenotype Ontology (HPO 2025-11-24 (hpo3 1.5.1); "
    "https://hpo.jax.org). Find out more at http://www.human-phenotype-ontology.org."
)
GO_LICENCE = "Gene Ontology (CC BY 4.0) and WikiPathways (CC0) via Enrichr libraries."

PARAMS = {
    "algorithm": "leiden",
    "k": 15,
    "resolution": 1.0,
    "seed": 42,
    "min_cluster_size": 10,
    "min_term_size": 3,
    "max_term_fraction": 0.5,
    "fdr_threshold": 0.05,
}


@dataclass
class ReviewData:
    """What :func:`review_data_build` made; summaries keyed by their initial status."""

    hpo: Dataset
    go: Dataset
    run: ClusteringRun
    go_run: ClusteringRun
    clusters: list[Cluster]
    summaries: dict[str, ClusterSummary] = field(default_factory=dict)
    go_summary: ClusterSummary | None = None
    job: GenerationJob | None = None


def _cluster(run: ClusteringRun, number: int, symbols: list[str]) -> Cluster:
    members = [{"id": f"NCBIGene:{1000 * number + i}", "symbol": s} for i, s in enumerate(symbols)]
    return Cluster.objects.create(
        run=run,
        number=number,
        size=len(members),
        members=members,
        composition_hash=composition_hash([m["id"] for m in members], run.cluster_type),
    )


def _terms(cluster: Cluster, rows: list[tuple[str, str, float, list[str]]]) -> None:
    """Enriched terms; a term listed as another's ancestor is hidden behind its first
    descendant (as the elim selection would when the descendant explains it), the rest are
    ranked in the order given."""
    explained = {a: term_id for term_id, _, _, ancestors in rows for a in reversed(ancestors)}
    rank = 0
    for i, (term_id, name, fdr, ancestors) in enumerate(rows):
        hidden = term_id in explained
        rank += 0 if hidden else 1
        TermEnrichment.objects.create(
            evidence_rank=None if hidden else rank,
            represents=0 if hidden else 1 + sum(1 for v in explained.values() if v == term_id),
            hidden_by=explained.get(term_id, ""),
            cluster=cluster,
            category="HPO" if term_id.startswith("HP:") else "GO",
            term_id=term_id,
            term_name=name,
            overlap=cluster.size - i,
            term_size=40 + 10 * i,
            p_value=fdr / 10,
            fdr=fdr,
            fold_enrichment=8.0 - i,
            overlap_members=[m["symbol"] for m in cluster.members][: cluster.size - i],
            ancestor_ids=ancestors,
        )


def _summary(
    cluster: Cluster,
    *,
    text: str,
    status: str,
    verdict: str,
    tags: list[str],
    model: str = "gemini-2.5-flash",
) -> ClusterSummary:
    phenotype = cluster.run.cluster_type == "phenotype"
    content: dict[str, object] = {"summary": text, "tags": tags, "confidence": "high"}
    if phenotype:
        content |= {
            "key_phenotype_themes": ["Seizures", "Developmental delay"],
            "clinical_pattern": "Early-onset epileptic encephalopathy.",
            "syndromicity": "syndromic",
            "notably_absent": [],
            "syndrome_hints": ["Dravet syndrome"],
            "inheritance_patterns": ["autosomal dominant"],
            "data_quality_note": None,
        }
    else:
        content |= {
            "key_themes": ["Synaptic transmission", "Ion transport", "Neuronal excitability"],
            "pathways": ["Synaptic vesicle pathway"],
            "clinical_relevance": None,
        }
    summary = ClusterSummary.objects.create(
        composition_hash=cluster.composition_hash,
        cluster_type=cluster.run.cluster_type,
        dataset=cluster.run.dataset,
        cluster=cluster,
        members=cluster.member_symbols,
        content=content,
        summary_text=text,
        tags=tags,
        confidence="high",
        derived_confidence="high",
        provider="gemini",
        model=model,
        prompt_version=f"{cluster.run.cluster_type}-v1",
        input_tokens=1200,
        output_tokens=300,
        cost_usd=Decimal("0.0011"),
        validation_status=status,
        judge_verdict=verdict,
        judge_reasoning=f"Judge reasoning for cluster {cluster.number}: grounded in the terms.",
        judge_scores={
            "is_factually_accurate": True,
            "is_grounded": verdict != "reject",
            "pathways_valid": True,
            "confidence_appropriate": verdict == "accept",
        },
        judge_model=model,
        judge_prompt_version="judge-v1",
    )
    ValidationEvent.objects.create(
        summary=summary,
        source=ValidationEvent.Source.JUDGE,
        from_status="",
        to_status=status,
        note=f"judge verdict {verdict}",
    )
    return summary


def review_data_build() -> ReviewData:
    """An HPO phenotype run (clusters 1-4: validated, pending, rejected, no summary) with its
    run job, and a GO functional run with one validated summary."""
    hpo = Dataset.objects.create(
        slug="hpo-test",
        name="NDD genes x HPO phenotypes",
        kind="phenotype",
        source="Human Phenotype Ontology gene annotations",
        release="HPO 2025-11-24 (hpo3 1.5.1)",
        licence=HPO_LICENCE,
        entity_count=120,
        term_count=900,
    )
    go = Dataset.objects.create(
        slug="go-test",
        name="NDD genes x GO and WikiPathways",
        kind="functional",
        source="Enrichr libraries",
        release="GO_Biological_Process_2023",
        licence=GO_LICENCE,
    )
    run = ClusteringRun.objects.create(
        dataset=hpo,
        cluster_type="phenotype",
        params=PARAMS,
        status=RunStatus.SUCCEEDED,
        modularity=0.61,
        unclustered=[["NCBIGene:1", "LONE1"]],
    )
    c1 = _cluster(
        run,
        1,
        [
            *("SCN1A", "SCN2A", "SCN8A", "KCNQ2", "KCNQ3", "STXBP1", "CDKL5"),
            *("PCDH19", "GABRA1", "GABRG2", "SLC2A1", "CHD2", "SYNGAP1", "DNM1"),
        ],
    )
    c2 = _cluster(run, 2, ["SCN1AB", *(f"GENE2_{i}" for i in range(11))])
    c3 = _cluster(run, 3, [f"GENE3_{i}" for i in range(11)])
    c4 = _cluster(run, 4, [f"GENE4_{i}" for i in range(55)])
    _terms(
        c1,
        [
            ("HP:0001250", "Seizure", 1e-20, []),
            ("HP:0007359", "Focal-onset seizure", 3e-18, ["HP:0001250"]),
            ("HP:0001263", "Global developmental delay", 2e-9, []),
            ("HP:0002373", "Febrile seizure", 4e-6, ["HP:0001250"]),
        ],
    )
    _terms(
        c2,
        [
            ("HP:0000252", "Microcephaly", 1e-8, []),
            ("HP:0001249", "Intellectual disability", 1e-4, []),
        ],
    )
    _terms(c3, [("HP:0001252", "Hypotonia", 2e-3, [])])
    _terms(c4, [("HP:0000729", "Autistic behavior", 5e-7, [])])
    data = ReviewData(hpo=hpo, go=go, run=run, go_run=run, clusters=[c1, c2, c3, c4])
    data.summaries["validated"] = _summary(
        c1,
        text="Validated clinical picture: early-onset seizures with developmental delay.",
        status="validated",
        verdict="accept",
        tags=["epilepsy", "seizures", "development"],
    )
    data.summaries["pending"] = _summary(
        c2,
        text="Pending clinical picture: microcephaly with intellectual disability.",
        status="pending",
        verdict="low_confidence",
        tags=["microcephaly", "intellectual disability", "growth"],
        model="gemini-2.5-pro",
    )
    data.summaries["rejected"] = _summary(
        c3,
        text="Rejected clinical picture: hypotonia only.",
        status="rejected",
        verdict="reject",
        tags=["hypotonia", "muscle", "tone"],
    )
    data.job = GenerationJob.objects.create(
        run=run,
        scope=GenerationJob.Scope.RUN,
        status=JobStatus.SUCCEEDED,
        provider="gemini",
        model="gemini-2.5-flash",
        judge_model="gemini-2.5-flash",
        total=4,
        succeeded=2,
        rejected=1,
        failed=0,
        skipped=1,
    )
    go_run = ClusteringRun.objects.create(
        dataset=go, cluster_type="functional", params=PARAMS, status=RunStatus.SUCCEEDED
    )
    g1 = _cluster(go_run, 1, [f"SYN{i}" for i in range(10)])
    _terms(g1, [("GO:0007268", "chemical synaptic transmission", 1e-12, [])])
    data.go_run = go_run
    data.go_summary = _summary(
        g1,
        text="Functional picture: synaptic transmission genes.",
        status="validated",
        verdict="accept",
        tags=["synapse", "neurotransmission", "vesicle"],
    )
    return data


def staff_user_create(
    username: str = "curator", *, superuser: bool = True, perms: tuple[str, ...] = ()
) -> User:
    """A staff user with PASSWORD: a superuser, or staff with only the given ``app.codename``
    permissions."""
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.org", PASSWORD)
    user = User.objects.create_user(username, f"{username}@example.org", PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user
