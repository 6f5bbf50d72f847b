"""Convert the Multiface release to the prepared layout as FaceDiffuser prepares it (multiface.py).

Input (``--raw DIR``)::

    <raw>/<subject folder>/tracked_mesh/<SEN_...>/<frame>.bin   float32 (7306, 3) per frame, millimetres
                                                   (or .obj, e.g. after FaceDiffuser's convert_topology.py)
    <raw>/<subject folder>/audio/<SEN_...>.wav
    <raw>/vertex_map.txt      the 6,172 Multiface vertex ids meshtalk's re-topology keeps, in order
                              (0-based; the complement of the ignore list of FaceDiffuser's
                              data/multiface/convert_topolgy.py); needed for 7306-vertex frames only
    <raw>/face_template.obj   optional: FaceDiffuser's data/multiface/templates/face_template.obj (faces)
    <raw>/templates.pkl       optional: FaceDiffuser's data/multiface/templates.pkl
    <raw>/subjects.txt        optional: subject folders in the order that numbers them 1..13
    <raw>/regions/ or --regions DIR: weighted_mouth_mask.txt, forehead_mask.txt, lve.txt, fdd.txt

Decisions where the reference code is loose: frames are taken in numeric order of their file names
(FaceDiffuser's ``os.listdir`` order is unspecified); subjects are numbered by ``subjects.txt`` or
else by sorted folder name (FaceDiffuser: directory listing order), the mapping written to
``multiface.json``; without a ``templates.pkl`` a subject's template is the mean of its frames.
Units: ``facediffuser`` maps each axis from FaceDiffuser's fixed box to [-1, 1] (its numbers);
``metres`` scales millimetres by 0.001 (UniTalker's "meshtalk" scale).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkbench.audio.signal import audio_info
from talkbench.datasets import atomic
from talkbench.datasets.io import load_templates, read_obj_faces
from talkbench.datasets.multiface import META_FILE, N_VERTICES
from talkbench.datasets.prepared import TEMPLATES, VERTS_DIR, WAV_DIR
from talkbench.errors import ConfigError, DataError
from talkbench.meshio import read_vertices

log = logging.getLogger("talkbench.datasets")

N_RAW_VERTICES = 7306
# FaceDiffuser's preprocess.py: the per-axis box (mm) mapped to [-1, 1]
BOX_MIN = np.array([-117.798, -213.735, -177.091])
BOX_MAX = np.array([125.922, 185.79601, 75.365097])
UNITS = ("facediffuser", "metres")
# FaceDiffuser's sentence numbering (preprocess.py's table; not an alphabetical order)
SENTENCES = (
    "alfalfa_is_healthy_for_you", "allow_each_child_to_have_an_ice_pop",
    "all_your_wishful_thinking_wont_change_that", "and_you_think_you_have_language_problems",
    "approach_your_interview_with_statuesque_composure", "are_you_looking_for_employment",
    "as_she_drove_she_thought_about_her_plan", "a_good_morrow_to_you_my_boy", "a_voice_spoke_near-at-hand",
    "both_figures_would_go_higher_in_later_years", "boy_youre_stirrin_early_a_sleepy_voice_said",
    "by_eating_yogurt_you_may_live_longer", "cliff_was_soothed_by_the_luxurious_massage",
    "did_Shawn_catch_that_big_goose_without_help", "do_they_make_class_biased_decisions",
    "drop_five_forms_in_the_box_before_you_go_out", "george_is_paranoid_about_a_future_gas_shortage",
    "go_change_your_shoes_before_you_turn_around", "greg_buys_fresh_milk_each_weekday_morning",
    "have_you_got_our_keys_handy", "however_a_boys_lively_eyes_might_rove", "how_do_oysters_make_pearls",
    "how_long_would_it_be_occupied", "how_ya_gonna_keep_em_down_on_the_farm",
    "id_rather_not_buy_these_shoes_than_be_overcharged", "if_dark_came_they_would_lose_her",
    "im_going_to_search_this_house", "its_healthier_to_cook_without_sugar", "jeffs_toy_go_cart_never_worked",
    "more_he_could_take_at_leisure", "nobody_else_showed_pleasure", "oh_we_managed_she_said",
    "she_always_jokes_about_too_much_garlic_in_his_food", "take_charge_of_choosing_her_bridesmaids_gowns",
    "thank_you_she_said_dusting_herself_off", "then_he_thought_me_more_perverse_than_ever",
    "theyre_going_to_louse_me_up_good", "theyve_never_met_you_know", "they_all_like_long_hot_showers",
    "they_are_both_trend_following_methods", "they_enjoy_it_when_I_audition", "they_had_slapped_their_thighs",
    "they_werent_as_well_paid_as_they_should_have_been", "the_small_boy_put_the_worm_on_the_hook",
    "when_she_awoke_she_was_the_ship", "why_buy_oil_when_you_always_use_mine",
    "why_charge_money_for_such_garbage", "why_put_such_a_high_value_on_being_top_dog",
    "with_each_song_he_gave_verbal_footnotes", "youre_boiling_milk_aint_you",
)  # fmt: skip
SENTENCE_IDS = {f"SEN_{name}": k + 1 for k, name in enumerate(SENTENCES)}
REGION_FILES = ("weighted_mouth_mask.txt", "forehead_mask.txt", "lve.txt", "fdd.txt")


@dataclass
class MultifaceReport:
    written: int = 0
    subjects: dict[str, str] = field(default_factory=dict)  # id -> folder
    skipped: list[str] = field(default_factory=list)  # sequences without audio or not a sentence
    out: Path | None = None


def to_units(mm: np.ndarray, units: str) -> np.ndarray:
    if units == "metres":
        return mm * 1e-3
    return (mm - BOX_MIN) / (BOX_MAX - BOX_MIN) * 2.0 - 1.0


def read_frame(path: Path, keep: np.ndarray | None) -> np.ndarray:
    """One frame in the 6,172-vertex topology (millimetres), from .bin or .obj."""
    if path.suffix == ".bin":
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % 3:
            raise DataError(f"{path}: {raw.size} floats, not a multiple of 3; expected float32 (7306, 3)")
        verts = raw.reshape(-1, 3)
    else:
        verts = read_vertices(path)
    if verts.shape[0] == N_RAW_VERTICES:
        if keep is None:
            raise DataError(
                f"{path}: a frame in Multiface's own {N_RAW_VERTICES}-vertex topology, but no vertex_map.txt "
                f"in the raw folder lists the {N_VERTICES} vertices of meshtalk's re-topology"
            )
        verts = verts[keep]
    if verts.shape[0] != N_VERTICES:
        raise DataError(f"{path}: {verts.shape[0]} vertices; expected {N_RAW_VERTICES} or {N_VERTICES}")
    if not np.isfinite(verts).all():
        raise DataError(f"{path}: vertex positions contain NaN or inf")
    return verts.astype(np.float64)


def _vertex_map(raw: Path) -> np.ndarray | None:
    path = raw / "vertex_map.txt"
    if not path.is_file():
        return None
    ids = np.array(path.read_text().replace(",", " ").split(), dtype=np.int64)
    if (
        ids.shape != (N_VERTICES,)
        or ids.min() < 0
        or ids.max() >= N_RAW_VERTICES
        or len(set(ids)) != ids.size
    ):
        raise DataError(
            f"{path}: expected {N_VERTICES} distinct vertex ids in 0..{N_RAW_VERTICES - 1}, got {ids.size}"
        )
    return ids


def _subject_folders(raw: Path) -> list[Path]:
    order = raw / "subjects.txt"
    if order.is_file():
        folders = [raw / name for name in order.read_text().split()]
        missing = [str(f) for f in folders if not (f / "tracked_mesh").is_dir()]
        if missing:
            raise DataError(f"{order}: listed folders without tracked_mesh/: {', '.join(missing)}")
        return folders
    return sorted(p.parent for p in raw.glob("*/tracked_mesh") if p.is_dir())


def _frame_files(seq_dir: Path) -> list[Path]:
    """Frames in numeric order; a converted .obj wins over the .bin of the same frame."""
    by_stem: dict[str, Path] = {}
    for p in sorted(seq_dir.iterdir(), key=lambda p: p.suffix):  # .bin before .obj
        if p.suffix in (".bin", ".obj") and p.stem.isdigit():
            by_stem[p.stem] = p
    return [by_stem[s] for s in sorted(by_stem, key=int)]


def prepare_multiface(
    raw: str | Path, out: str | Path, regions: str | Path | None = None, units: str = "facediffuser"
) -> MultifaceReport:
    """Write ``out`` in the prepared layout; see the module docstring for ``raw``."""
    if units not in UNITS:
        raise ConfigError(f"multiface units '{units}': expected one of {', '.join(UNITS)}")
    raw, out = Path(raw).expanduser(), Path(out).expanduser()
    folders = _subject_folders(raw) if raw.is_dir() else []
    if not folders:
        raise DataError(
            f"{raw}: not a Multiface release: no <subject>/tracked_mesh/ folders "
            "(expected the subject folders of github.com/facebookresearch/multiface, mesh and audio)"
        )
    keep = _vertex_map(raw)
    region_dir = Path(regions).expanduser() if regions is not None else raw / "regions"
    if regions is not None and not region_dir.is_dir():
        raise DataError(f"{region_dir}: no such region directory")
    given_templates = load_templates(raw / TEMPLATES) if (raw / TEMPLATES).is_file() else None
    (out / WAV_DIR).mkdir(parents=True, exist_ok=True)
    (out / VERTS_DIR).mkdir(parents=True, exist_ok=True)
    report = MultifaceReport(out=out)
    templates: dict[str, np.ndarray] = {}
    for index, folder in enumerate(folders, 1):
        subject = str(index)
        report.subjects[subject] = folder.name
        total, count = np.zeros((N_VERTICES, 3)), 0
        for seq_dir in sorted(p for p in (folder / "tracked_mesh").iterdir() if p.is_dir()):
            sentence = SENTENCE_IDS.get(seq_dir.name)
            wav = folder / "audio" / f"{seq_dir.name}.wav"
            if sentence is None or not wav.is_file():
                report.skipped.append(f"{folder.name}/{seq_dir.name}")
                continue
            frames = _frame_files(seq_dir)
            if not frames:
                raise DataError(f"{seq_dir}: no frame files (<frame number>.bin or .obj)")
            motion = np.stack([to_units(read_frame(f, keep), units) for f in frames])
            audio_info(wav)  # an unreadable WAV is named here, before it is copied
            stem = f"{subject}_{sentence:02d}"
            atomic.save_npy(
                out / VERTS_DIR / f"{stem}.npy", motion.reshape(len(frames), -1).astype(np.float32)
            )
            atomic.copy_file(wav, out / WAV_DIR / f"{stem}.wav")
            total += motion.sum(axis=0)
            count += len(frames)
            report.written += 1
        if count:
            templates[subject] = total / count
        log.info("multiface: subject %s (%s) done, %d sequences so far", subject, folder.name, report.written)
    if given_templates is not None:
        missing = sorted(set(templates) - set(given_templates))
        if missing:
            raise DataError(f"{raw / TEMPLATES}: no template for subject(s) {', '.join(missing)}")
        templates = {s: given_templates[s] for s in templates}
    if not templates:
        raise DataError(f"{raw}: no sequence with both frames and audio/<SEN_...>.wav was found")
    atomic.save_templates(out / TEMPLATES, templates)
    if (raw / "face_template.obj").is_file():
        faces = read_obj_faces(raw / "face_template.obj")
        if faces.max() >= N_VERTICES:
            raise DataError(
                f"{raw / 'face_template.obj'}: faces index vertex {faces.max()}; expected < {N_VERTICES}"
            )
        atomic.save_npy(out / "faces.npy", faces)
    if region_dir.is_dir():
        (out / "regions").mkdir(exist_ok=True)
        for name in REGION_FILES:
            if (region_dir / name).is_file():
                atomic.copy_file(region_dir / name, out / "regions" / name)
    meta = {"source": "multiface", "units": units, "subjects": report.subjects,
            "sentences": {v: k for k, v in SENTENCE_IDS.items()}}  # fmt: skip
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    if report.skipped:
        log.warning("multiface: %d sequences skipped (not a sentence, or no audio): %s",
                    len(report.skipped), ", ".join(report.skipped[:5]))  # fmt: skip
    return report
