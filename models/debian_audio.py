"""Labelled training audio from a Debian package, fetched at training time and checked by sha256.

``models/train_head.py`` adds these clips to its data (never at run time: the head ships as a
file). They are fetched the way the demo scenario fetches its recordings
(:func:`scripts.tools.make_scenario.cached_file`: ``apt-get download`` of the pinned version, or
of the current one if the file in it is unchanged; the .deb's and every file's sha256 checked).

The package is C-Dogs SDL's data (``cdogs-sdl-data``): game sounds under CC0 or CC-BY-3.0 (its
``/usr/share/doc/cdogs-sdl-data/copyright``). Not used from it: ``sounds/mg.ogg`` (it is
freesound 163460, which is also in UrbanSound8K, our evaluation set). Packages whose audio is in
``../shared/audio`` (openclonk, the dev manifest's sources) are never harvested.
"""

from __future__ import annotations

from pathlib import Path

from scripts.tools.make_scenario import DebSource, cached_file

PACKAGE = "cdogs-sdl-data"
VERSION = "2.4.0+dfsg-2"
DEB_SHA256 = "b7244d540390e62d7399d77f53ae8d62db179c4454c73cb140bf2a8ca22cf297"
DEB_SIZE = 26_014_468
ROOT = "usr/share/games/cdogs-sdl/"
BARADARI = ("CC-BY-3.0", "Michel Baradari, opengameart: chaingun-pistol-rifle-shotgun-shots")
DUESTO = ("CC0-1.0", "duesto freesound:156904")
# the package's catch-all stanza (missions/*); where the gungame sounds came from is not recorded
GUNGAME = ("CC0-1.0", "Cong Xu, C-Dogs SDL (Wuzzy's gungame campaign)")
WUZZY = "missions/custom/Wuzzy/gungame.cdogscpn/sounds/"
# the gungame campaign's weapon sounds: file name -> sha256
WUZZY_SHA256 = {
    "1s1k.ogg": "54caa6ad982fae1a4511752041ae61135d7a61c17a858eb05f5486387d730ef4",
    "77.ogg": "01ec8e6a787961331adf3416f83d84c330ac6b39bc48bfccd9b5e241a790a112",
    "angry_rabbit.ogg": "7abaf13a4dbe70f982c4c286ec917fc80bf663d622dd28ed27373913b6461a4f",
    "desert_hawk.ogg": "621b341f79f110fdc9d21305d971932a9f72e65f2c023771cfd592546bd96fe4",
    "gh55b.ogg": "2dcb7c7777e84ba81a444ffd334bff892feb34378130f245cf5437ecea266fa1",
    "gs49.ogg": "2393f20f61b083868344efa7521fab7047257fef3511f2c9991b73c9741b2f31",
    "hitpro.ogg": "4aee14e0bb71c9973e49704cf32b256922ed1a57fe7686436bf5b07a3ab8e92c",
    "jb007.ogg": "03d9b3df465291ffeaf70ffb25bf057fbd555110a8f600c157e0da6fd31e5aa4",
    "m500.ogg": "2b0460dd85eb6693021171d93b8ff349c3a4d7696b5f8db61d4a7fbeae1abbe9",
    "mag.ogg": "67f0eebdd42b7daa1c0da553afa7fe7fc712fe600d44431a0085c276705440ca",
    "md5.ogg": "f50cac1fd19a3d461a6ab24767febb877f4fd6a035615a518e7c5f3a8b671fbc",
    "mg5000.ogg": "e9e5a91f1413e7e8d1721bac297194fd2a581978b5545df0331002915992f523",
    "mg6000.ogg": "80f14b7f3f01bd5d2c9f1e573791e21420300ec217947093ffa10e2f2f371006",
    "milit.ogg": "f7bc6957539895451d2f757c927172866efcfcb04c8cb6dfda9ebd1056a838b7",
    "piecemarker.ogg": "5a3dcf85abcd57dac705026c7b04ce3719cd000a1ae2d650c0e7441a738784fa",
    "pn21.ogg": "30ccf970c9213f66a0567e92fb26932f7a5c02ae7ec5c583a6190193e4285c67",
    "poshlinov.ogg": "3b0b59f573142bb240318d9ff08f48b46f20722ffa0892c9ee254859a2b5317e",
    "pow9.ogg": "091d07d8a6cda2b9cf934d16f88649113cb47bcefbccfe54f8ee29b75cb419d8",
    "pwn3r.ogg": "fea03ad68b53988782d43e5a0ff51812bf59410c9f553b6a42e57fcb213c4244",
    "raging_pitbull.ogg": "a3ee04beff2d14867658cfcbadd9cc2a62a5c2dc329ee6f3a285707d1bbf360e",
    "sg1.ogg": "f0ebcd3c45088a3557dd9c3231ac1b9a2f1737c2e5cf7636a2a1639f0e460b2c",
    "sg2.ogg": "376f79cb624183c1cac1d666147d50a52bb6772c8627b1585c7aac9068d9cfaa",
    "snp6plus.ogg": "19b551e2d7f6ac0e6e50102361f7ff371c5f9eb19a4b0057cdabdb87364a9e39",
    "storm.ogg": "f55a8138823b6422b081746798e9312b2c3ff26bd23c2b709f2810491cbdda86",
    "x90.ogg": "8d5314f9c978642bf5f7b6a56e0fdf417e6ef62d84902f7f8993785fab14a07d",
}


def _clip(path: str, sha256: str, licence: str, attribution: str) -> DebSource:
    """Return one sound of the package (path under ROOT) as a pinned Debian source."""
    return DebSource(
        key=f"cdogs_{Path(path).stem}",
        package=PACKAGE,
        version=VERSION,
        deb_sha256=DEB_SHA256,
        deb_size=DEB_SIZE,
        path=ROOT + path,
        file_sha256=sha256,
        license=licence,
        attribution=attribution,
    )


GUNSHOTS: tuple[DebSource, ...] = (
    _clip(
        "sounds/pistol.wav",
        "3d45f172c546644c630bc59847c06dbce8d4cd4cac1ced5bb04c09cf9c3bc12e",
        *BARADARI,
    ),
    _clip(
        "missions/doom.cdogscpn/sounds/marine_shotgun.ogg",
        "9f3964d42b7892ae8805a88c9b534eb387a0819bb142aa9bb031374d6c63a96a",
        *BARADARI,
    ),
    _clip(
        "dogfights/map07.cdogscpn/sounds/sshotgun.ogg",
        "3c04602c2e2fb9d0573a5e8f1978058181f8e6baeaca67f5bc2880c7a0997fae",
        *BARADARI,
    ),
    _clip(
        "sounds/shotgun.ogg",
        "3f3f71ba098adb5d0edac37d91dc53c2ff7fa285bb02db17c941dc9a53774802",
        *DUESTO,
    ),
    *(_clip(WUZZY + name, digest, *GUNGAME) for name, digest in WUZZY_SHA256.items()),
)


def fetch(cache: Path) -> list[tuple[DebSource, Path]]:
    """Return every gunshot with its file in ``cache`` (fetched once, sha256-checked)."""
    return [(clip, cached_file(clip, cache, log=lambda _: None)) for clip in GUNSHOTS]
