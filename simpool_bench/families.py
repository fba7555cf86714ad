"""The model families simpool-bench builds, as data: which timm modules belong to each, which
pools and attention-map sources apply, where SimPool and the classifier sit, and how a state
dict of the family is recognised. One table, read by ``models``, ``checkpoints`` and the README.

=============  =========================================  ==================  ==========================
family         timm modules (model names)                 pools               map sources
=============  =========================================  ==================  ==========================
vit            vision_transformer, deit (vit_*, deit_*)   simpool cls gap map simpool cls map rollout gradcam
resnet         resnet (resnet*, resnext*, seresnet*...)   simpool gap         simpool cam gradcam
convnext       convnext (convnext*)                       simpool gap         simpool cam gradcam
efficientnet   efficientnet (efficientnet*, mnasnet...)   simpool gap         simpool cam gradcam
regnet         regnet (regnetx_*, regnety_*)              simpool gap         simpool cam gradcam
=============  =========================================  ==================  ==========================

(``cls`` needs a CLS token, ``map`` a ViT built with ``global_pool='map'``, ``cam`` a GAP CNN with a
classifier, ``gradcam`` a classifier; ``simpool`` pool simpool.) No torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass

POOLS: tuple[str, ...] = ("simpool", "cls", "gap", "map")
MAP_SOURCES: tuple[str, ...] = ("simpool", "cls", "cam", "map", "rollout", "gradcam")


@dataclass(frozen=True)
class Family:
    """One model family.

    Args:
        name: our family name.
        modules: timm registry modules whose models belong to it.
        pools: pools it supports.
        sources: attention-map sources it supports (subject to the pool, see ``source_applies``).
        gamma: SimPool's paper-default gamma (1.25 transformers, 2.0 CNNs).
        classifier: state-dict key of the classifier weight.
        simpool_supervised: where SimPool sits in the supervised layout (``simpool.`` for DINO).
        signature: keys that tell a state dict of this family (all must be present, as prefixes).
    """

    name: str
    modules: tuple[str, ...]
    pools: tuple[str, ...]
    sources: tuple[str, ...]
    gamma: float
    classifier: str
    simpool_supervised: str
    signature: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "vit",
            ("vision_transformer", "deit"),
            POOLS,
            ("simpool", "cls", "map", "rollout", "gradcam"),
            1.25,
            "head.weight",
            "gp.pool.",
            ("patch_embed.proj.weight",),
        ),
        Family(
            "resnet",
            ("resnet",),
            ("simpool", "gap"),
            ("simpool", "cam", "gradcam"),
            2.0,
            "fc.weight",
            "global_pool.pool.",
            ("conv1.weight", "layer4."),
        ),
        Family(
            "convnext",
            ("convnext",),
            ("simpool", "gap"),
            ("simpool", "cam", "gradcam"),
            2.0,
            "head.fc.weight",
            "head.global_pool.pool.",
            ("stem.0.weight", "stages."),
        ),
        Family(
            "efficientnet",
            ("efficientnet",),
            ("simpool", "gap"),
            ("simpool", "cam", "gradcam"),
            2.0,
            "classifier.weight",
            "global_pool.pool.",
            ("conv_stem.weight", "blocks."),
        ),
        Family(
            "regnet",
            ("regnet",),
            ("simpool", "gap"),
            ("simpool", "cam", "gradcam"),
            2.0,
            "head.fc.weight",
            "head.global_pool.pool.",
            ("stem.conv.weight", "s4."),
        ),
    )
}
CNN_FAMILIES: tuple[str, ...] = tuple(n for n in FAMILIES if n != "vit")
EXAMPLE_ARCHS: tuple[str, ...] = (
    "vit_small_patch16_224",
    "vit_small_patch8_224",
    "deit_tiny_patch16_224",
    "resnet50",
    "convnext_tiny",
    "efficientnet_b0",
    "regnetx_002",
)


def family_of_module(module: str) -> str | None:
    """Our family of a timm registry module, or None."""
    return next((f.name for f in FAMILIES.values() if module in f.modules), None)


def family_of_state_dict(keys) -> str | None:
    """The family whose signature the keys (our layout) match, or None."""
    keys = list(keys)
    for f in FAMILIES.values():
        if all(any(k == s or k.startswith(s) for k in keys) for s in f.signature):
            return f.name
    return None


def source_applies(family: str, pool: str, source: str, *, has_cls_token: bool, has_classifier: bool) -> str | None:
    """None when map ``source`` applies to this model, else why not (one phrase)."""
    fam = FAMILIES[family]
    if source not in fam.sources:
        return f"a {family} has no {source!r} map (its sources: {', '.join(fam.sources)})"
    if source == "simpool" and pool != "simpool":
        return f"'simpool' needs pool='simpool', not pool={pool!r}"
    if source == "cls" and not has_cls_token:
        return "'cls' needs a ViT with a CLS token (pool 'cls', 'gap' or 'map'), not a SimPool ViT"
    if source == "map" and pool != "map":
        return f"'map' needs a ViT with timm's attention-pool head (pool='map'), not pool={pool!r}"
    if source == "cam" and (pool != "gap" or not has_classifier):
        return f"'cam' needs a GAP CNN with a classifier, not pool={pool!r}{'' if has_classifier else ' without a classifier'}"
    if source == "gradcam" and not has_classifier:
        return "'gradcam' needs a classifier (its gradients are those of a class logit)"
    return None
