"""Game soundtracks from Debian packages no corpus uses: an evaluation-only set of real music.

``scripts/evaluate --soundtracks`` plays them as negatives, as if in the room with no media player
known: 4.2 h of orchestral, electronic and ambient music whose quiet or dramatic passages the
tagger does not always call music (what the issue's 9 h of music, speech and ambience measure,
and that ``../shared/audio`` holds only minutes of). Fetched when asked for, like the demo
scenario's recordings (:func:`scripts.tools.make_scenario.cached_file`: ``apt-get download`` of
the pinned version, or of the current one if the file in it is unchanged; every .deb's and
file's sha256 checked) into ``build/soundtracks``. Their licences are in each package's
copyright file; they are never trained on and never committed. Packages whose audio is in
``../shared/audio`` (the dev manifest's sources) are not used.
"""

from __future__ import annotations

from pathlib import Path

from scripts.tools.make_scenario import DebSource, cached_file

CACHE = Path("build/soundtracks")
# package -> version, .deb sha256, .deb size, music folder, {file under it: sha256}
_PINS: dict[str, tuple[str, str, int, str, dict[str, str]]] = {
    "warzone2100-music": (
        "4.7.0-3",
        "9d281786223f9ace830e4fc1c0085cc1875d1aa35286ca301d941c2796c965eb",
        112_578_624,
        "usr/share/games/warzone2100/music/",
        {
            "albums/aftermath_soundtrack/menu_enhanced.opus": (
                "a9d5cb75073ec1e3efaeb233990cd5872b5106cc4032e4c21f1e102e9c97b92c"
            ),
            "albums/aftermath_soundtrack/track17.opus": (
                "878f44ac1bcce05862b53f597fd9da7e45ff15daf8664affefcc99a56d023166"
            ),
            "albums/aftermath_soundtrack/track18.opus": (
                "9c4d6ab6294e050d10f4a04bc9ba596c652b5b0f03eb9e83db0a27f8c83ef44d"
            ),
            "albums/aftermath_soundtrack/track19.opus": (
                "cf7e609fc7d21cc12f7f8f4d8851c059b079f4ab068b687cd1e5989c2278dbde"
            ),
            "albums/aftermath_soundtrack/track20.opus": (
                "14022d68a5805033ec8a36f733d86defed4e03b3c649c85132c66c848f9ea34b"
            ),
            "albums/aftermath_soundtrack/track21.opus": (
                "30c7066e4031a594ec2ed726442c15dded46fc605d4e07eaac0e363918541762"
            ),
            "albums/aftermath_soundtrack/track22.opus": (
                "084c5266bf80ce8ae43d6bbd40bc3b3efd5b50a692249433ebb2ca5a440754a6"
            ),
            "albums/aftermath_soundtrack/track23.opus": (
                "3275e1a81b01e968f84992ed00d637ec6b98e21a6f6aa7c662fde5c0e00100a2"
            ),
            "albums/aftermath_soundtrack/track24.opus": (
                "aa00d6ea7799b61f18c8fbda13bc5053b50f5c804bb91df65d0d49cc908d88fe"
            ),
            "albums/aftermath_soundtrack/track25.opus": (
                "c451881f63c1ef57f3d7961894b5ab44089a8d3d41c298923454f30fc4b4d6f9"
            ),
            "albums/aftermath_soundtrack/track26.opus": (
                "1c2a5b3c29e293a0456d296e4e7f6600ae1832daecd932c3db5dbf4feafccb38"
            ),
            "albums/aftermath_soundtrack/track27.opus": (
                "27dcc84dd541d1c64c6322e26ea6d6a39c715cd307da1d8a59bebd6b61f78b8a"
            ),
            "albums/aftermath_soundtrack/track3_enhanced.opus": (
                "a8837fe39a36cc1f8649061a59664e6d006d5e4f025259287b8d4f31d79030ad"
            ),
            "albums/legacy_soundtrack/track10.opus": (
                "0bc55937502b6d8933985de8883649833ad8a83350f126b9d7dc782c8895e807"
            ),
            "albums/legacy_soundtrack/track11.opus": (
                "93ff9b979ce023b43d4442427a1828782bcf35b529eb3d9493ee13fa6af809ae"
            ),
            "albums/legacy_soundtrack/track12.opus": (
                "776d3c0ee0bb0f4ff648aec099a7571aad359574971f4a8568155f024873ea4e"
            ),
            "albums/legacy_soundtrack/track13.opus": (
                "b65dd40908de8aa17e64894f491507d65213a97e669905154f805fdbfc8bb6d0"
            ),
            "albums/legacy_soundtrack/track14.opus": (
                "61ffe9d2e1ff8bc06406dcabff1679d033d16cf30c5cef9676612efabd8c959d"
            ),
            "albums/legacy_soundtrack/track15.opus": (
                "a13c23162a7b5426494eb264b82e30ce85d7fa792a73f778b80aa1fad781f865"
            ),
            "albums/legacy_soundtrack/track16.opus": (
                "eb14c9e9da334680fcba1e2fc40170ec3da8da6a89e4753e40c92e9977d9adcc"
            ),
            "albums/legacy_soundtrack/track4.opus": (
                "0ad2dbd5c0bfbff001f15fc1d614d7d42b92e1370788aa5c516d6513561ba35c"
            ),
            "albums/legacy_soundtrack/track5.opus": (
                "67637923ba732c86163d3549c4c10d7be6f8b89a31ee6b1a911c2971a2a19836"
            ),
            "albums/legacy_soundtrack/track6.opus": (
                "cff41a827be0b00d16466811b1252c4cee464a8b07ad77fae44dea788d86495b"
            ),
            "albums/legacy_soundtrack/track7.opus": (
                "95d8ba6409cfb8d97e714da43a8ce9fe69fdf1edbd550be9efc57cf82e169b1e"
            ),
            "albums/legacy_soundtrack/track8.opus": (
                "2faff0ef1f4c937b3cec42e843eeafc1188c7a19dae9bc16facbb356e95a48e7"
            ),
            "albums/legacy_soundtrack/track9.opus": (
                "d4e80979f131556dd52af80157c9f9e90758193e4a63aed9ca8f81a367ee241e"
            ),
            "albums/original_soundtrack/track1.opus": (
                "8d5ad61a36a7cc2fde1815fb8b4b589e067df7ce8a1a100876c1286ff12718ca"
            ),
            "albums/original_soundtrack/track2.opus": (
                "512ac3c83ed53a66e82ed69e4856cde203be35ae9daf0bdc08b21e9dd2a6850d"
            ),
            "albums/original_soundtrack/track3.opus": (
                "54d3c08027c06e947712725c8ad3bbebaf79d696f50d9bc97c87e83f2bcb30d7"
            ),
            "menu.opus": "8ddd2c78405a0c3d10c4268cb5c5e241db233975d0f372aee98d300f33256f29",
        },
    ),
    "extremetuxracer-data": (
        "0.8.4-2",
        "63d8d012b6212baceebea0cead233c2a28e20d67bc3128dcc22580feee286c66",
        40_595_548,
        "usr/share/games/etr/music/",
        {
            "calmrace-ks.ogg": "511a8f8b453ea952ea0145104ad2ce1b4603b9155748ee57d165208297da5906",
            "credits1-cp.ogg": "6a089f4318ffa9be759799f7908d3c8b9097ed3d2dd2d4a5e39825cdcef4e043",
            "freezingpoint.ogg": "3197b07979cd2d1b35eca882b1ffa61c436a31963277bd35339e083a38f3df35",
            "lostrace-ks.ogg": "58538c88a12ae3dbf3f268710b57199b60a2667fb6e6498d0116481033b1db1a",
            "options1-jt.ogg": "8f6b17d2fc83e7a0c73b460b112f58c24628c6cfa1c78e6b4b8e277aa30293c0",
            "race1-jt.ogg": "1597043297c086aa4c556b1a8c821344888b8e29b30614083a49eacac7b52106",
            "raceintro-ks.ogg": "efacd5648c95bc946210b49cc5df01fc407e2076472ded5b8154b472bedca8ef",
            "spunkyrace-ks.ogg": "1b448ebcde1200b85544b7e6daa17808d49593aad7bcd14c728f146678370cf5",
            "start1-jt.ogg": "a1487d880db00693792141cd4fdd2ee3a489ddd3b9da96b0e34ea81e0b516d82",
            "wonrace1-jt.ogg": "cbe40e018513a6289753f13dd02b85ff795c46de42c9e1890dd3e033df519783",
        },
    ),
}


def sources() -> list[DebSource]:
    """Return every soundtrack as a pinned Debian source."""
    return [
        DebSource(
            key=f"{package}_{Path(name).with_suffix('')}".replace("/", "_"),
            package=package,
            version=version,
            deb_sha256=deb_sha256,
            deb_size=deb_size,
            path=root + name,
            file_sha256=sha256,
            license=f"see /usr/share/doc/{package}/copyright",
            attribution=package,
        )
        for package, (version, deb_sha256, deb_size, root, files) in _PINS.items()
        for name, sha256 in files.items()
    ]


def soundtracks(cache: Path = CACHE) -> list[Path]:
    """Return the soundtracks' files, fetched into cache and checked if they aren't there."""
    return [cached_file(src, cache) for src in sources()]
