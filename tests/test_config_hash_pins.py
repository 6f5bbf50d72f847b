"""The run identity's hashes are a compatibility promise: runs are matched and checkpoints resumed by them.

These values were computed by talkbench at 5364aba (before config.py became a package) for every
shipped method x preset x dataset, as resolved and with overrides that change results (a method
setting, a train setting, a SynthTalk option and the seed). A change to the hash scheme must keep
them, or bump the scheme's version and say how old runs are matched (talkbench/config/hashing.py).
"""

from __future__ import annotations

import pytest

from talkbench.config import load_config
from talkbench.config.hashing import SCHEME

# an override per method that changes its results (the template has no settings: an eval one instead)
METHOD_SETTING = {
    "codetalker": "codetalker.beta=0.5",
    "faceformer": "faceformer.lr=1.0e-4",
    "memorytalker": "memorytalker.memory_slots=16",
    "mean-motion": "mean-motion.period=25",
    "template": "eval.n_boot=10",
}

# (method, preset, dataset, overridden) -> (config_hash, training_fingerprint), pinned at 5364aba
PINNED_SCHEME = 2
PINNED = {
    ("codetalker", "synthtalk", "synthtalk", False): ("fdc4a8d8eaeaf326", "902cd27e395bb097"),
    ("codetalker", "synthtalk", "synthtalk", True): ("0a572cf374bb5d77", "6b5d34a1bdebfa20"),
    ("codetalker", "paper", "vocaset", False): ("897ce057cfd75b50", "06f661153f06a782"),
    ("codetalker", "paper", "vocaset", True): ("75bdf94412c9e3d1", "b31b221f35805891"),
    ("codetalker", "paper", "biwi", False): ("5f1a4dd1b299b482", "55950219ddde96ff"),
    ("codetalker", "paper", "biwi", True): ("a1a66caeeeaf5dda", "006d9b9e484fb1fd"),
    ("codetalker", "tiny", "synthtalk", False): ("675a8fc1afbf0585", "18ad6fdc84405e63"),
    ("codetalker", "tiny", "synthtalk", True): ("58d6649b62a0c6bd", "4edd43f74ac807d4"),
    ("faceformer", "synthtalk", "synthtalk", False): ("b10a8d4116c4010d", "cb6342b76bfd3746"),
    ("faceformer", "synthtalk", "synthtalk", True): ("bb56fb3594a5b380", "98f9961f459405e3"),
    ("faceformer", "paper", "vocaset", False): ("99b28a2aa57484c5", "d7149786df0c7781"),
    ("faceformer", "paper", "vocaset", True): ("7c5cfb5b441e4323", "b4a4e44289b94c61"),
    ("faceformer", "paper", "biwi", False): ("b170d44b2017b0cb", "919014f359086a9d"),
    ("faceformer", "paper", "biwi", True): ("111b2720aad69a6a", "0bef1592b7f42100"),
    ("faceformer", "tiny", "synthtalk", False): ("97937c70d7e31838", "dc2547d69d7e4b70"),
    ("faceformer", "tiny", "synthtalk", True): ("8fb232670931d6db", "188e5a08a46f3cac"),
    ("memorytalker", "synthtalk", "synthtalk", False): ("4a69ad9bce1c1f56", "0dc03e8be6c1d6d5"),
    ("memorytalker", "synthtalk", "synthtalk", True): ("dcaf675c2222adf1", "233e4616f40ee0b4"),
    ("memorytalker", "paper", "vocaset", False): ("98c94f430bc4caec", "f62b2ea3732aa159"),
    ("memorytalker", "paper", "vocaset", True): ("61824f00a2123640", "4ebc72a83eb5077f"),
    ("memorytalker", "paper", "biwi", False): ("c899fe471ba9204a", "cd7025d021689f5e"),
    ("memorytalker", "paper", "biwi", True): ("9a397d0fd4d2b14f", "81f524f3459b71be"),
    ("memorytalker", "tiny", "synthtalk", False): ("3857067169435822", "308743a01e16c0de"),
    ("memorytalker", "tiny", "synthtalk", True): ("aa7a0a5b8e1e295c", "e54b36bd212862ba"),
    ("mean-motion", "synthtalk", "synthtalk", False): ("ba412e3c8632876e", "9fe4c97903ee7a4b"),
    ("mean-motion", "synthtalk", "synthtalk", True): ("288ace328b9605ff", "e7b0795533a325b3"),
    ("mean-motion", "paper", "vocaset", False): ("441670bd53e93de1", "e9a8ce909855f7ca"),
    ("mean-motion", "paper", "vocaset", True): ("9075563673accb72", "94ccefaac008c6b2"),
    ("mean-motion", "paper", "biwi", False): ("bc3a0c65cfcac533", "8940ade5e7fe3bf3"),
    ("mean-motion", "paper", "biwi", True): ("10dcf82e80ea58b2", "2a1fec6863891b3f"),
    ("mean-motion", "tiny", "synthtalk", False): ("56816ea351634c90", "0620cde34889b910"),
    ("mean-motion", "tiny", "synthtalk", True): ("bec1eef12c51b795", "64e7610b4a6c6d13"),
    ("template", "synthtalk", "synthtalk", False): ("bd0935239bfa0f98", "51581d5052bb0509"),
    ("template", "synthtalk", "synthtalk", True): ("e0ac2b18463fee07", "f09d6267baf42a23"),
    ("template", "paper", "vocaset", False): ("c9bb4d8a54f88408", "9bbd48fe33596927"),
    ("template", "paper", "vocaset", True): ("dabd5ec8fb4469a0", "1ba020aadb0ce0ae"),
    ("template", "paper", "biwi", False): ("d95175581167a61b", "9e1eb67416ea5639"),
    ("template", "paper", "biwi", True): ("048da56cf5942588", "4c4fefd7af484cac"),
    ("template", "tiny", "synthtalk", False): ("f63fb722178b8bbb", "48c106b0ec95d582"),
    ("template", "tiny", "synthtalk", True): ("5c326431a7a1a805", "3d58f4ea64698919"),
}


def _overrides(method: str, dataset: str) -> list[str]:
    extra = ["dataset.style_coupling=0.5"] if dataset == "synthtalk" else []
    return ["train.selection=val", METHOD_SETTING[method], *extra]


@pytest.mark.parametrize("case", sorted(PINNED), ids=lambda c: "-".join(map(str, c)))
def test_config_hashes_stay_as_pinned(case):
    method, preset, dataset, overridden = case
    run = load_config(
        method,
        dataset=dataset,
        preset=preset,
        overrides=_overrides(method, dataset) if overridden else (),
        seed=3 if overridden else None,
    )
    assert (run.config_hash(), run.training_fingerprint()) == PINNED[case]


def test_the_pins_are_of_the_scheme_in_use():
    """A new hash scheme bumps SCHEME, and then these pins must be looked at (kept, or the old
    scheme kept computable for the runs that carry them)."""
    assert SCHEME == PINNED_SCHEME
