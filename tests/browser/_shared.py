"""What conftest.py and the browser tests share: the repository's folders and the JavaScript that reads plotly
data (pasted into the functions the tests hand to ``page.evaluate``)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
APP = REPO / "app"

# Two declarations for the body of a JS function:
# ``norm(v)``: plotly.py sends arrays base64-encoded ({dtype, bdata, shape}); plotly.js decodes the traces it draws
# in place (adding _inputArray) but keeps the frames as sent, so compare the encoded payloads, or the plain arrays
# (typed arrays become plain ones).
# ``hash(s)``: a short fingerprint of a string (32-bit FNV-1a and the length), so only that crosses to Python.
JS_NORM_AND_HASH = """
    const norm = (u) => {
        if (u === undefined || u === null) return null;
        if (ArrayBuffer.isView(u)) return Array.from(u);
        if (Array.isArray(u)) return u.map(norm);
        if (typeof u === 'object' && 'bdata' in u) return [u.dtype, u.shape === undefined ? null : String(u.shape), u.bdata];
        return u;
    };
    const hash = (s) => {
        let h = 2166136261;
        for (let k = 0; k < s.length; k++) { h ^= s.charCodeAt(k); h = Math.imul(h, 16777619); }
        return (h >>> 0).toString(16) + ':' + s.length;
    };"""
