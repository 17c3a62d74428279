"""A page to review merge proposals: one self-contained HTML file a person opens in a browser.

Both merge doors write it (``autotrack task merge`` from a task's frames through the API,
``autotrack merge`` from ``--video``): each proposal, best first, with its number (the one
``--accept`` takes), the two tracks and their label, a thumbnail of the last box of the
earlier track and one of the first box of the later track (square crops with context, the
box drawn), the gap, the confidence on a colour band and the plain reason, and the command
that merges the chosen ones.

The file has no external resources: thumbnails are embedded as base64 JPEG (160 px, quality
80), at most :data:`MAX_SHOWN` proposals are shown (the page says so when there are more), and
it reads without JavaScript; a little inline script ticks proposals into the command, sorts
the columns and hides the doubtful rows. Every string is HTML-escaped (labels, reasons,
titles and paths come from users).

Frames come from a callable ``frame(index) -> BGR array or None``, asked once per needed
frame in increasing order, so a door can stream a video or a task's chunks once
(:func:`forward_frames`).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from autotrack.errors import AutotrackError
from autotrack.tracks import Track

THUMB = 160  # thumbnail side, pixels
JPEG_QUALITY = 80
MAX_SHOWN = 200  # proposals on one page, best first
CONTEXT = 1.6  # the square crop's side over the box's larger side
BEFORE_BGR = (0, 153, 255)  # the earlier track's box: orange
AFTER_BGR = (230, 160, 0)  # the later track's box: blue
_BANDS = ((0.9, "high", "#2e7d32"), (0.7, "fair", "#7cb342"), (0.5, "doubtful", "#f9a825"),
          (0.0, "low", "#c62828"))

FrameReader = Callable[[int], "np.ndarray | None"]


def forward_frames(frames: Iterable[tuple[int, np.ndarray]]) -> FrameReader:
    """A reader over ``(index, frame)`` pairs in increasing index order (a video, a task's
    chunks), for indices asked in increasing order: None for an index the pairs skip or end
    before."""
    iterator = iter(frames)
    current: list[Any] = [None]

    def frame(index: int) -> np.ndarray | None:
        while current[0] is None or current[0][0] < index:
            current[0] = next(iterator, None)
            if current[0] is None:
                return None
        return current[0][1] if current[0][0] == index else None

    return frame


def thumbnail(image: np.ndarray, box: Sequence[float], color: tuple[int, int, int]) -> bytes:
    """A ``THUMB`` x ``THUMB`` JPEG of the square around ``box`` (x1, y1, x2, y2), grey past
    the frame's edges, with the box drawn in ``color``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 8.0) * CONTEXT
    left = math.floor((x1 + x2 - side) / 2)
    top = math.floor((y1 + y2 - side) / 2)
    size = math.ceil(side)
    crop = np.full((size, size, 3), 96, np.uint8)
    height, width = image.shape[:2]
    a0, b0 = max(left, 0), max(top, 0)
    a1, b1 = min(left + size, width), min(top + size, height)
    if a1 > a0 and b1 > b0:
        crop[b0 - top:b1 - top, a0 - left:a1 - left] = image[b0:b1, a0:a1, :3]
    scale = THUMB / size
    crop = cv2.resize(crop, (THUMB, THUMB),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    p1 = (round((x1 - left) * scale), round((y1 - top) * scale))
    p2 = (round((x2 - left) * scale), round((y2 - top) * scale))
    cv2.rectangle(crop, p1, p2, (0, 0, 0), 4)
    cv2.rectangle(crop, p1, p2, color, 2)
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the thumbnail could not be encoded")
    return jpeg.tobytes()


def _ends(rows: Sequence[Mapping[str, Any]], pieces: Mapping[int, Track]
          ) -> dict[tuple[int, int], tuple[int, np.ndarray]]:
    """(track id, 0 for its last box or 1 for its first) -> (frame, box) for every row."""
    ends = {}
    for row in rows:
        for side, track_id in ((0, row["before"]), (1, row["after"])):
            track = pieces.get(int(track_id))
            if track is not None and len(track.frames):
                k = -1 if side == 0 else 0
                ends[(int(track_id), side)] = (int(track.frames[k]), track.boxes[k])
    return ends


def needed_frames(rows: Sequence[Mapping[str, Any]], pieces: Mapping[int, Track],
                  max_shown: int = MAX_SHOWN) -> list[int]:
    """The frames a page of ``rows`` shows thumbnails of, in increasing order."""
    return sorted({index for index, _ in _ends(rows[:max_shown], pieces).values()})


def thumbnails(rows: Sequence[Mapping[str, Any]], pieces: Mapping[int, Track],
               frame: FrameReader) -> tuple[dict[tuple[int, int], str], list[str]]:
    """Base64 JPEGs keyed as :func:`_ends` keys them, reading each needed frame once, in
    order; and notes on frames that could not be read."""
    ends = _ends(rows, pieces)
    by_frame: dict[int, list[tuple[int, int]]] = {}
    for key, (index, _) in ends.items():
        by_frame.setdefault(index, []).append(key)
    out: dict[tuple[int, int], str] = {}
    missing: list[int] = []
    for index in sorted(by_frame):
        try:
            image = frame(index)
        except (AutotrackError, cv2.error, OSError) as exc:
            return out, [(f"frames from {index} on could not be read ({exc}); their "
                          "thumbnails are missing")]
        if image is None:
            missing.append(index)
            continue
        for key in by_frame[index]:
            color = BEFORE_BGR if key[1] == 0 else AFTER_BGR
            jpeg = thumbnail(image, ends[key][1], color)
            out[key] = base64.b64encode(jpeg).decode("ascii")
    notes = []
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        notes.append(f"frame {shown} could not be read (past the end of the video?); "
                     "no thumbnail there")
    return out, notes


# --- the page --------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:20px 24px;color:#1f2328;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px}
p{margin:6px 0}
.sub{color:#57606a}
.note{color:#9a6700}
.cmd{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;margin:12px 0}
.cmd pre{margin:6px 0 4px;padding:8px 10px;background:#24292f;color:#f6f8fa;border-radius:4px;
white-space:pre-wrap;word-break:break-all;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
.cmd small{color:#57606a}
.tools{margin:8px 0}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;width:100%}
th,td{border-bottom:1px solid #d8dee4;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2;position:sticky;top:0;white-space:nowrap}
th[data-sort]{cursor:pointer}
td.n{font-weight:600;text-align:right}
td.pair,td.gap{white-space:nowrap}
figure{margin:0;width:160px}
figcaption{font-size:12px;color:#57606a;white-space:nowrap}
img{display:block;border-radius:3px}
.none{width:160px;height:160px;display:flex;align-items:center;justify-content:center;
background:#eaeef2;color:#57606a;font-size:12px;text-align:center;border-radius:3px}
.b0{color:#bc4c00;font-weight:600}
.b1{color:#0969da;font-weight:600}
.conf{font-weight:600;font-size:15px}
.band{height:8px;width:110px;border-radius:4px;background:#eaeef2;margin-top:4px}
.band span{display:block;height:100%;border-radius:4px}
td.why{max-width:420px}
"""

_SCRIPT = """
(function(){
var body=document.querySelector('#proposals tbody');
var rows=[].slice.call(body.rows);
var cmd=document.getElementById('command');
function update(){
var chosen=[],trim=false;
rows.forEach(function(r){if(r.querySelector('input').checked){chosen.push(+r.dataset.number);
if(+r.dataset.gap<=0)trim=true;}});
chosen.sort(function(a,b){return a-b;});
cmd.textContent=chosen.length?cmd.dataset.base+' --accept '+chosen.join(',')+
(trim?' --trim':''):'(tick the proposals to merge)';}
rows.forEach(function(r){r.querySelector('input').addEventListener('change',update);});
var floor=document.getElementById('floor');
floor.disabled=false;
floor.addEventListener('change',function(){rows.forEach(function(r){
r.style.display=+r.dataset.confidence>=+floor.value?'':'none';});});
[].slice.call(document.querySelectorAll('th[data-sort]')).forEach(function(th){
var up=th.dataset.sort!=='confidence';
th.addEventListener('click',function(){var k=th.dataset.sort;
rows.sort(function(a,b){return (up?1:-1)*(a.dataset[k]-b.dataset[k]);});up=!up;
rows.forEach(function(r){body.appendChild(r);});});});
update();
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _band(confidence: float) -> tuple[str, str]:
    for floor, word, color in _BANDS:
        if confidence >= floor:
            return word, color
    return _BANDS[-1][1], _BANDS[-1][2]


def _gap(gap: int, fps: float | None) -> str:
    if gap <= 0:
        return f"overlap of {1 - gap} frame{'s' if gap < 0 else ''}<br>(trimmed)"
    text = f"{gap} frame{'s' if gap != 1 else ''}"
    if fps:
        text += f"<br>{gap / fps:.1f} s"
    return text


def _figure(row: Mapping[str, Any], side: int, pieces: Mapping[int, Track],
            images: Mapping[tuple[int, int], str]) -> str:
    track_id = int(row["after" if side else "before"])
    track = pieces.get(track_id)
    where = ""
    if track is not None and len(track.frames):
        where = f", frame {int(track.frames[0 if side else -1])}"
    caption = (f'<figcaption><span class="b{side}">track {track_id}</span>{_e(where)}'
               "</figcaption>")
    jpeg = images.get((track_id, side))
    if jpeg is None:
        picture = '<div class="none">no thumbnail</div>'
    else:
        alt = f"track {track_id}{where}"
        picture = (f'<img src="data:image/jpeg;base64,{jpeg}" width="{THUMB}" '
                   f'height="{THUMB}" alt="{_e(alt)}">')
    return f"<figure>{picture}{caption}</figure>"


def _row(row: Mapping[str, Any], pieces: Mapping[int, Track],
         images: Mapping[tuple[int, int], str], fps: float | None, ticked: bool) -> str:
    number, gap = int(row["number"]), int(row["gap"])
    confidence = float(row["confidence"])
    word, color = _band(confidence)
    checked = " checked" if ticked else ""
    return (
        f'<tr data-number="{number}" data-gap="{gap}" data-confidence="{confidence:.3f}">'
        f'<td class="n">{number}</td>'
        f'<td><input type="checkbox" value="{number}"{checked} '
        f'aria-label="merge proposal {number}"></td>'
        f'<td class="pair"><b>{_e(row["before"])} &rarr; {_e(row["after"])}</b><br>'
        f'{_e(row["label"])}</td>'
        f"<td>{_figure(row, 0, pieces, images)}</td>"
        f"<td>{_figure(row, 1, pieces, images)}</td>"
        f'<td class="gap">{_gap(gap, fps)}</td>'
        f'<td><span class="conf">{confidence:.2f}</span> {word}'
        f'<div class="band"><span style="width:{100 * confidence:.0f}%;background:{color}">'
        f"</span></div></td>"
        f'<td class="why">{_e(row["reason"])}</td></tr>')


def review_page(rows: Sequence[Mapping[str, Any]], pieces: Mapping[int, Track],
                frame: FrameReader | None, *, title: str, command: str,
                min_confidence: float, fps: float | None = None,
                notes: Sequence[str] = (), rest: str = "",
                max_shown: int = MAX_SHOWN) -> str:
    """The page for ``rows`` (numbered proposals, best first, as
    :func:`autotrack.merge.listing.list_proposals` makes them) over ``pieces`` (the tracks'
    boxes). ``command`` merges proposals once ``--accept N,N`` is added (shell-quoted by the
    caller); rows at or above ``min_confidence`` are ticked. ``frame`` None: no thumbnails
    (``notes`` should say why). ``rest`` says where the proposals past ``max_shown`` are."""
    shown = list(rows[:max_shown])
    notes = list(notes)
    images: dict[tuple[int, int], str] = {}
    if frame is not None and shown:
        images, problems = thumbnails(shown, pieces, frame)
        notes += problems
    ticked = [int(r["number"]) for r in shown if float(r["confidence"]) >= min_confidence]
    overlap = any(int(r["gap"]) <= 0 for r in shown if int(r["number"]) in ticked)
    if ticked:
        now = f"{command} --accept {','.join(map(str, sorted(ticked)))}" + \
              (" --trim" if overlap else "")
    else:
        now = "(tick the proposals to merge)"
    count = f"{len(rows)} proposal{'s' if len(rows) != 1 else ''}, best first"
    if len(rows) > len(shown):
        count += f"; this page shows the {len(shown)} best" + (f" ({_e(rest)})" if rest else "")
    floors = "".join(f'<option value="{f}"{" selected" if f == 0 else ""}>{f:.1f}</option>'
                     for f in (0, 0.5, 0.7, 0.9))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Merge proposals: {_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Merge proposals: {_e(title)}</h1>",
        (f'<p class="sub">{count}. Each row proposes that the later track continues the '
         "earlier one: left, the last box of the earlier track (orange); right, the first box "
         "of the later track (blue). Proposals at or above confidence "
         f"{min_confidence:.2f} are ticked.</p>"),
        *(f'<p class="note">{_e(note)}</p>' for note in notes),
        ('<div class="cmd">To merge the ticked proposals, run:'
         f'<pre id="command" data-base="{_e(command)}">{_e(now)}</pre>'
         "<small>Ticking and unticking rows changes the numbers after --accept (with "
         "JavaScript on); or edit them by hand. --trim is added where a ticked proposal "
         "overlaps; add --bridge to draw the object through the gaps.</small></div>"),
        ('<p class="tools"><label>Show confidence from <select id="floor" disabled>'
         f"{floors}</select></label> &middot; click #, gap or confidence to sort</p>"),
        ('<table id="proposals"><thead><tr><th data-sort="number">#</th><th>merge</th>'
         "<th>tracks, label</th><th>end of the earlier track</th>"
         '<th>start of the later track</th><th data-sort="gap">gap</th>'
         '<th data-sort="confidence">confidence</th><th>why</th></tr></thead><tbody>'),
        *(_row(r, pieces, images, fps, int(r["number"]) in ticked) for r in shown),
        "</tbody></table>",
        "" if shown else "<p>No track seems to continue another: nothing to merge.</p>",
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


__all__ = ["MAX_SHOWN", "THUMB", "forward_frames", "needed_frames", "review_page", "thumbnail", "thumbnails"]
