"""A PNG reader for the tests (8-bit gray/RGB/RGBA, non-interlaced: what vksd writes), with its
text chunks; no PIL needed. `python3 png_read.py A.png B.png` exits 0 when the pixels are equal."""
import struct
import sys
import zlib


def read_png(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, text = 8, b"", {}
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0
            ch = {0: 1, 2: 3, 6: 4}[ctype]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            text[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"iTXt":
            k, rest = body.split(b"\0", 1)
            comp, _method = rest[0], rest[1]
            _lang, _tk, v = rest[2:].split(b"\0", 2)
            text[k.decode("latin-1")] = (zlib.decompress(v) if comp else v).decode("utf-8")
        pos += 12 + n
    raw, stride, out, prev = zlib.decompress(idat), w * ch, bytearray(), bytearray(w * ch)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], (prev[i - ch] if i >= ch else 0)
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return w, h, ch, bytes(out), text



if __name__ == "__main__":
    a, b = (read_png(open(f, "rb").read()) for f in sys.argv[1:3])
    same = a[:4] == b[:4]
    print("%s: %dx%dx%d vs %dx%dx%d, pixels %s" % (" vs ".join(sys.argv[1:3]), *a[:3], *b[:3], "equal" if same else "DIFFER"))
    sys.exit(0 if same else 1)
