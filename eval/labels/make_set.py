"""How answers.jsonl was made (kept for provenance; answers.jsonl is the labelled set itself).

    .venv/bin/python eval/labels/make_set.py     # rewrites the hand-written rows, keeps the labelled local ones

Hand-written answers (in the style of a hosted model) are below, each with its class, its hand label and why;
cited ones carry passages cut from the real documents (on a Debian machine, under /usr/share). The local arms'
answers (eval/labels/local_answers.py) were labelled by hand and merged in (`--local FILE`); their labels live in
answers.jsonl, which a run without `--local` keeps.
Every question belongs to one document; the part (tune or heldout) is the question's, fixed in questions.jsonl
by document before the grader was tuned.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the project root, for lib

# (question id, class, answer, correct, why[, sources, citations])
# sources: list of (document, start phrase, characters); citations: none | correct | wrong
C, W = True, False
HAND: list[tuple] = [
    # ------------------------------------------------------------------ tune: refusals
    ("ap08", "refusal", "I could not find this in the provided documents.", C,
     "unanswerable; declines"),
    ("ap08", "refusal", "Nothing in the Apache License sets a cure period in days, so I can't give a number.", C,
     "unanswerable; says the licence has no such period"),
    ("ap09", "refusal", "The Apache License text doesn't mention any fee charged by the Apache Software Foundation; "
     "the licence itself is granted free of charge.", C, "unanswerable; says the text has no such fee, invents none"),
    ("ap09", "refusal", "There is no such fee in the licence.", C, "unanswerable; no fee is stated, none invented"),
    ("mp08", "refusal", "This cannot be answered from the provided sources.", C, "unanswerable; declines"),
    ("mp11", "refusal", "The licence text says nothing about when the Mozilla Foundation was founded.", C,
     "unanswerable; declines"),
    ("rr09", "refusal", "The specification describes no such limit.", C, "unanswerable; says the spec has no limit"),
    ("ug11", "refusal", "The page lists www-data but gives no uid for it.", C, "unanswerable; declines"),
    ("ug13", "refusal", "There's no information about that in these documents.", C, "unanswerable; declines"),
    ("nh09", "refusal", "None of the retrieved passages state a default maximum request body size.", C,
     "unanswerable; declines"),
    ("fb09", "refusal", "Unknown - the libffi documentation provided doesn't specify a limit on arguments.", C,
     "unanswerable; declines"),
    ("nh09", "refusal", "That isn't covered here.", C, "unanswerable; declines"),
    ("mp01", "refusal", "I'm not able to determine the license steward from the given context.", W,
     "answerable (Mozilla Foundation); refused"),
    ("rr02", "refusal", "The documents do not say which value is the default.", W,
     "answerable (binary-targets); refused"),
    ("ug03", "refusal", "Sorry, the provided text doesn't include that uid.", W, "answerable (37); refused"),
    ("nh02", "refusal", "The excerpt doesn't state it explicitly, but the default headersTimeout is 60000 ms.", C,
     "partial refusal that still asserts the right value"),
    ("nh04", "refusal", "I can't find it in the sources; it is probably 120 seconds.", W,
     "partial refusal asserting a wrong value (5000 ms)"),
    ("mp08", "refusal", "The licence doesn't mention a fee, but commercial licences usually cost about $500 a year.", W,
     "unanswerable; hedges then invents a fee"),
    # ------------------------------------------------------------------ tune: fabrications
    ("ap08", "fabrication", "You have 30 days to cure a breach before the licence terminates.", W,
     "unanswerable; invents 30 days"),
    ("rr09", "fabrication", "At most 8 keywords are allowed.", W, "unanswerable; invents a limit"),
    ("ug11", "fabrication", "www-data has uid 33.", W, "the page gives no uid for www-data; 33 is not from it"),
    ("nh09", "fabrication", "The default maximum body size is 1 MB.", W, "unanswerable; invents 1 MB"),
    ("mp11", "fabrication", "The Mozilla Foundation was founded in 2003.", W, "unanswerable; not in the licence"),
    ("fb09", "fabrication", "ffi_call supports up to 256 arguments.", W, "unanswerable; invents a limit"),
    ("ug13", "fabrication", "A default installation creates 18 users.", W, "unanswerable; invents a number"),
    ("mp08", "fabrication", "Commercial use requires a paid licence from Mozilla.", W,
     "unanswerable; asserts a paid licence the text never mentions"),
    # ------------------------------------------------------------------ tune: near-miss identifiers
    ("rr03", "near-miss", "DEB_RULES_REQUIRE_ROOT", W, "missing S: not the variable the spec names"),
    ("rr04", "near-miss", "It is exposed in DPKG_GAIN_ROOT_CMD.", W, "the old name, not DEB_GAIN_ROOT_CMD"),
    ("rr05", "near-miss", "DEB_GAIN_ROOT_CMD", W, "the current name; the old one was DPKG_GAIN_ROOT_CMD"),
    ("ug06", "near-miss", "Its shell is /usr/bin/sync.", W, "different path: the page says /bin/sync"),
    ("ug07", "near-miss", "It writes them to /var/lib/man.", W, "different path: /var/cache/man"),
    ("mp01", "near-miss", "The Mozilla Corporation.", W, "different organisation with the same first word"),
    ("ap07", "near-miss", "http://www.apache.org/license/LICENSE-2.0", W, "path component 'license' differs"),
    ("fb04", "near-miss", "FFI_BAD_TYPEDEF", W, "that is for a bad type; an invalid abi gives FFI_BAD_ABI"),
    ("fb02", "near-miss", "Use ffi_prep_cif_varargs instead.", W, "no such function; it is ffi_prep_cif_var"),
    ("rr10", "near-miss", "The dpkg/upstream-make-install keyword.", W,
     "wrong namespace: debhelper/upstream-make-install"),
    ("ug01", "near-miss", "The base-files package.", W, "a different package: base-passwd"),
    ("rr07", "near-miss", "--root-owner", W, "incomplete option name: --root-owner-group"),
    ("ug10", "near-miss", "LSB 1.2 lists daemon as legacy.", W, "wrong version: LSB 1.3"),
    ("rr06", "near-miss", "It became stable in dpkg 1.19.0.", W, "1.19.0 introduced the old name; stable in 1.19.1"),
    ("rr03", "near-miss", "`DEB_RULES_REQUIRES_ROOT`", C, "exact name, in code quotes"),
    ("ug01", "near-miss", "The base-passwd package.", C, "exact package"),
    ("fb03", "near-miss", "It returns `FFI_OK`.", C, "exact status"),
    ("mp01", "near-miss", "the mozilla foundation", C, "same organisation, case aside"),
    ("rr06", "near-miss", "dpkg 1.19.1", C, "exact version"),
    # ------------------------------------------------------------------ tune: wrong unit
    ("nh01", "wrong-unit", "16384 kilobytes (16 MB).", W, "bytes, not kilobytes"),
    ("nh02", "wrong-unit", "60000 seconds.", W, "milliseconds, not seconds"),
    ("nh03", "wrong-unit", "The default requestTimeout is 300000 seconds.", W, "milliseconds, not seconds"),
    ("nh04", "wrong-unit", "keepAliveTimeout defaults to 5000 seconds.", W, "5000 ms, not seconds"),
    ("nh06", "wrong-unit", "30000 microseconds.", W, "milliseconds, not microseconds"),
    ("nh08", "wrong-unit", "keepAliveMsecs defaults to 1000 seconds.", W, "1000 ms, not seconds"),
    ("mp03", "wrong-unit", "The Contributor has 60 months.", W, "days, not months"),
    ("mp04", "wrong-unit", "You have 30 hours after receiving the notice.", W, "days, not hours"),
    ("ap01", "wrong-unit", "Ownership of 50 shares or more.", W, "50 percent, not 50 shares"),
    ("fb08", "wrong-unit", "At least 32 or 64 bytes.", W, "bits, not bytes"),
    # ------------------------------------------------------------------ tune: swapped roles
    ("nh05", "swapped-roles", "maxSockets defaults to 256 and maxFreeSockets to Infinity.", W, "values swapped"),
    ("nh05", "swapped-roles", "maxFreeSockets: 256 by default; maxSockets: Infinity.", C, "each value in its role"),
    ("mp04", "swapped-roles", "You have 60 days to become compliant; the Contributor has 30 days to notify you.", W,
     "the two periods swapped"),
    ("mp03", "swapped-roles", "The Contributor must notify you within 30 days after you come back into compliance; "
     "after a first notice you get 60 days to comply.", W, "the two periods swapped"),
    ("mp03", "swapped-roles", "The Contributor has 60 days after you come back into compliance (separately, after a "
     "first notice you have 30 days to comply).", C, "right period for the role asked; the other in its own role"),
    ("nh02", "swapped-roles", "headersTimeout defaults to 300000 ms and requestTimeout to 60000 ms.", W,
     "values swapped between the two timeouts"),
    ("nh03", "swapped-roles", "requestTimeout is 300000 ms by default, while headersTimeout is 60000 ms.", C,
     "each value in its role"),
    ("fb04", "swapped-roles", "FFI_BAD_ABI is returned when a type is incorrect, and FFI_BAD_TYPEDEF when the abi is "
     "invalid.", W, "the two statuses swapped"),
    ("nh04", "swapped-roles", "keepAliveTimeout defaults to 30000 ms and connectionsCheckingInterval to 5000 ms.", W,
     "values swapped"),
    ("rr02", "swapped-roles", "The default is no; binary-targets has to be set explicitly.", W,
     "binary-targets is the default, not no"),
    ("nh04", "swapped-roles", "connectionsCheckingInterval defaults to 30000 ms and keepAliveTimeout to 5000 ms.", C,
     "each value in its role"),
    # ------------------------------------------------------------------ tune: unit conversion
    ("nh04", "unit-conversion", "5 seconds.", C, "5000 ms"),
    ("nh03", "unit-conversion", "Five minutes.", C, "300000 ms"),
    ("nh02", "unit-conversion", "One minute.", C, "60000 ms"),
    ("nh06", "unit-conversion", "30 s", C, "30000 ms"),
    ("nh08", "unit-conversion", "One second.", C, "1000 ms"),
    ("nh01", "unit-conversion", "16 KiB.", C, "16384 bytes"),
    ("nh01", "unit-conversion", "16 KB", C, "16 KiB, written loosely"),
    ("ap01", "unit-conversion", "Half or more of the outstanding shares.", C, "50%"),
    ("fb08", "unit-conversion", "At least 4 or 8 bytes, the size of a register.", C, "32 or 64 bits"),
    ("nh03", "unit-conversion", "300 seconds.", C, "300000 ms"),
    ("nh02", "unit-conversion", "60,000 milliseconds.", C, "same value, thousands separator"),
    ("nh01", "unit-conversion", "16,384 B", C, "16384 bytes"),
    # ------------------------------------------------------------------ tune: incidental numbers
    ("ap01", "incidental", "Per section 1, control means owning 50% or more of the outstanding shares.", C,
     "section number is not a claim"),
    ("mp04", "incidental", "Under section 5.1 you have 30 days after receiving the notice.", C,
     "section number is not a claim"),
    ("mp03", "incidental", "Section 5.1 gives the Contributor 60 days after you are compliant again.", C,
     "section number is not a claim"),
    ("ap06", "incidental", "Apache License 2.0 was issued in January 2004.", C, "2.0 comes from the question"),
    ("rr06", "incidental", "The spec (version 1.0) was released as stable with dpkg 1.19.1.", C,
     "1.0 is the spec's own version, not a rival dpkg version"),
    ("rr12", "incidental", "Version 1.0 (it was released as stable in dpkg 1.19.1).", C, "dpkg version is an aside"),
    ("ug03", "incidental", "Operator had uid 37 (the gnats user had 41).", C, "41 belongs to another user"),
    ("nh07", "incidental", "maxHeadersCount defaults to 2000; setting it to 0 removes the limit.", C,
     "0 is the no-limit setting, not the default"),
    ("ap10", "incidental", "Sections 1 to 9.", C, "the range the reference gives"),
    ("nh10", "incidental", "It responds with status 400 (Bad Request) to an HTTP/1.1 request lacking a Host header.",
     C, "1.1 comes from the question"),
    ("ug12", "incidental", "As nobody (uid 65534).", C, "the uid is an aside; the claim is nobody"),
    ("mp05", "incidental", "LGPL version 2.1 or any later version (the MPL itself is version 2.0).", C,
     "2.0 comes from the question"),
    ("rr06", "incidental", "Between dpkg 1.19.0 and 1.19.1 the variable was called DPKG_GAIN_ROOT_CMD; the spec "
     "became stable in 1.19.1.", C, "1.19.0 is the start of a range, not the answer"),
    # ------------------------------------------------------------------ tune: contrasts
    ("mp04", "contrast", "Not 60 but 30 days after receiving the notice.", C, "60 is the contrast"),
    ("mp03", "contrast", "60 days - not the 30 days that apply after a first notice.", C, "30 is the contrast"),
    ("nh04", "contrast", "The default is 5000 ms rather than the 60000 ms of headersTimeout.", C,
     "60000 is the contrast"),
    ("nh01", "contrast", "16384 bytes; a larger value such as 65536 has to be set explicitly.", C,
     "65536 is an example, not the default"),
    ("rr02", "contrast", "binary-targets, not no.", C, "'no' is the contrast"),
    ("ug07", "contrast", "In /var/cache/man rather than /usr/share/man.", C, "the second path is the contrast"),
    ("nh02", "contrast", "60000 ms (not 300000 ms, which is the requestTimeout).", C, "300000 is the contrast"),
    ("mp01", "contrast", "The Mozilla Foundation, not the Mozilla Corporation.", C, "the Corporation is the contrast"),
    ("mp04", "contrast", "Not 30 but 60 days.", W, "asserts 60, the wrong period"),
    ("nh03", "contrast", "300000 ms, instead of the 120000 ms used by older versions.", C, "120000 is the contrast"),
    # ------------------------------------------------------------------ tune: scoped negation
    ("mp02", "scoped-negation", "Only the Mozilla Foundation; no one else may publish new versions (except as "
     "section 10.3 allows).", C, "'no one else' affirms the steward's exclusive right"),
    ("ap04", "scoped-negation", "No, it is irrevocable.", C, "matches"),
    ("ap04", "scoped-negation", "It cannot be revoked: the grant is irrevocable.", C, "same claim, negated verb"),
    ("ap04", "scoped-negation", "Yes, the Licensor can revoke it at any time.", W, "opposite claim"),
    ("ap05", "scoped-negation", "No - it does not grant trademark permission, except for describing the origin of "
     "the Work.", C, "same claim"),
    ("ap05", "scoped-negation", "Yes, you may use the Licensor's trademarks freely.", W, "opposite claim"),
    ("ug08", "scoped-negation", "No. Web content should not be owned by www-data, or a compromised server could "
     "rewrite the site.", C, "same claim"),
    ("ug08", "scoped-negation", "Yes, web content should be owned by www-data so the server can write it.", W,
     "opposite claim"),
    ("rr11", "scoped-negation", "dh_testroot doesn't verify anything then; it is a no-op.", C,
     "negation describes the no-op"),
    ("rr11", "scoped-negation", "It verifies that it runs under fakeroot.", W, "that is the behaviour otherwise"),
    ("mp10", "scoped-negation", "Yes; they are not affected by the termination and survive it.", C,
     "negation does not flip the claim"),
    ("mp10", "scoped-negation", "No, they do not survive termination.", W, "opposite claim"),
    ("mp09", "scoped-negation", "You do, not any Contributor.", C, "the negation is the reference's own contrast"),
    ("fb06", "scoped-negation", "No, it can't; each ABI needs its own copy.", C, "same claim"),
    ("fb06", "scoped-negation", "Yes, one structure type can be shared by all ABIs.", W, "opposite claim"),
    ("mp07", "scoped-negation", "Nowhere other than the courts of a jurisdiction where the defendant maintains its "
     "principal place of business.", C, "'nowhere other than' = only"),
    # ------------------------------------------------------------------ tune: question echo
    ("ap13", "question-echo", "Derivative Works must include a readable copy of the attribution notices.", W,
     "echoes the question; never names the NOTICE file"),
    ("rr01", "question-echo", "It adds a new field to the Source stanza of debian/control.", W,
     "echoes the question; names no field"),
    ("ug02", "question-echo", "A tool that keeps the master passwd and group entries in sync on all Debian systems.",
     W, "echoes the question; never names update-passwd"),
    ("mp07", "question-echo", "Litigation relating to the MPL may be brought in the courts of a jurisdiction.", W,
     "echo; leaves out whose jurisdiction"),
    ("nh10", "question-echo", "It sends a status code to the request without a Host header.", W, "echo; no code"),
    ("fb01", "question-echo", "The cif in ffi_cif stands for cif.", W, "echo"),
    ("ap11", "question-echo", "Contributions are submitted for inclusion in the Work under some terms.", W, "echo"),
    ("ug05", "question-echo", "Mailboxes are kept in a mail directory that a group can write.", W,
     "echo; no path or group"),
    ("ug12", "question-echo", "Root access from the client is performed as a user on the server.", W,
     "echo; names no user"),
    ("mp01", "question-echo", "The license steward of the MPL 2.0 is the Mozilla Foundation.", C,
     "echoes the question and answers it"),
    ("ap13", "question-echo", "A readable copy of the attribution notices in the NOTICE file.", C, "names the file"),
    # ------------------------------------------------------------------ tune: citations
    ("mp04", "citation", "30 days after receiving the notice [1].", C, "cited §5.1 says so",
     [("MPL-2.0.txt", "5.1. The rights granted", 900), ("MPL-2.0.txt", "10. Versions of the License", 700)],
     "correct"),
    ("mp04", "citation", "30 days [2].", C, "right value, but [2] is about new versions",
     [("MPL-2.0.txt", "5.1. The rights granted", 900), ("MPL-2.0.txt", "10. Versions of the License", 700)],
     "wrong"),
    ("mp04", "citation", "60 days [1].", W, "wrong period; [1] gives 60 days to the Contributor, not to you",
     [("MPL-2.0.txt", "5.1. The rights granted", 900), ("MPL-2.0.txt", "10. Versions of the License", 700)],
     "wrong"),
    ("ug06", "citation", "/bin/sync [1]", C, "the cited page says so",
     [("users-and-groups.html", "The shell of user sync", 300), ("users-and-groups.html", "Many games are sgid", 300)], "correct"),
    ("ug06", "citation", "/bin/sync [3]", C, "only two sources were retrieved",
     [("users-and-groups.html", "The shell of user sync", 300), ("users-and-groups.html", "Many games are sgid", 300)], "wrong"),
    ("ug06", "citation", "/usr/bin/sync [1]", W, "the source says /bin/sync",
     [("users-and-groups.html", "The shell of user sync", 300), ("users-and-groups.html", "Many games are sgid", 300)], "wrong"),
    ("rr03", "citation", "DEB_RULES_REQUIRES_ROOT [1][2].", C, "[1] holds it; [2] (the Gain Root API) is an extra that does not",
     [("rootless-builds.txt", "When the builder supports this specification", 500),
      ("rootless-builds.txt", "The builder will provide a command to promote", 500)], "correct"),
    ("nh01", "citation", "16 KiB [1].", C, "[1] says 16384 (16 KiB)",
     [("http.md", "`maxHeaderSize` {number} Optionally overrides", 400)], "correct"),
    ("nh04", "citation", "5 seconds [1].", C, "[1] says 5000 (5 seconds)",
     [("http.md", "### `server.keepAliveTimeout`", 500)], "correct"),
    ("ap01", "citation", "50% or more of the outstanding shares [1].", C, "[1] defines it",
     [("Apache-2.0.txt", "\"Legal Entity\" shall mean", 700)], "correct"),
    ("mp07", "citation", "Only in the courts where the defendant has its principal place of business [1].", C,
     "cited §8", [("MPL-2.0.txt", "8. Litigation", 500), ("MPL-2.0.txt", "5.1. The rights granted", 600)],
     "correct"),
    ("mp07", "citation", "Only in the courts where the defendant has its principal place of business [2].", C,
     "[2] is the termination section", [("MPL-2.0.txt", "8. Litigation", 500),
                                        ("MPL-2.0.txt", "5.1. The rights granted", 600)], "wrong"),
    ("ap04", "citation", "No, it is irrevocable [1].", C, "§2 says irrevocable",
     [("Apache-2.0.txt", "2. Grant of Copyright License", 600), ("Apache-2.0.txt", "7. Disclaimer of Warranty", 600)],
     "correct"),
    ("ap04", "citation", "No, it is irrevocable [2].", C, "[2] is the warranty disclaimer",
     [("Apache-2.0.txt", "2. Grant of Copyright License", 600), ("Apache-2.0.txt", "7. Disclaimer of Warranty", 600)],
     "wrong"),
    ("rr02", "citation", "binary-targets", C, "no citation",
     [("rootless-builds.txt", "The case sensitive values are defined as", 500)], "none"),
    ("fb03", "citation", "FFI_OK [1]", C, "[1] says FFI_OK",
     [("The-Basics.html", "ffi_prep_cif returns a libffi status code", 400)], "correct"),
    ("fb03", "citation", "FFI_SUCCESS [1]", W, "[1] says FFI_OK",
     [("The-Basics.html", "ffi_prep_cif returns a libffi status code", 400)], "wrong"),
    # ------------------------------------------------------------------ tune: plain
    ("ap02", "plain", "Your patent licenses for the Work terminate on the date you file patent litigation claiming "
     "the Work infringes a patent.", C, "same condition"),
    ("ap02", "plain", "After 90 days of patent litigation.", W, "no 90 days; they end when litigation is filed"),
    ("ap03", "plain", "Prominent notices saying that you changed them.", C, "same"),
    ("ap06", "plain", "January 2004", C, "same"),
    ("ap06", "plain", "March 2004", W, "wrong month"),
    ("ap11", "plain", "Under the terms of this License, with no additional terms.", C, "same"),
    ("ap12", "plain", "[yyyy] and [name of copyright owner]", C, "same"),
    ("ap12", "plain", "[year] and [author]", W, "not the placeholders in the text"),
    ("ug04", "plain", "41", C, "same"),
    ("ug04", "plain", "They had uid and gid 42.", W, "41"),
    ("ug09", "plain", "proxy", C, "same"),
    ("fb05", "plain", "FFI_DEFAULT_ABI", C, "same"),
    ("fb07", "plain", "It returns FFI_BAD_ARGTYPE.", C, "same"),
    ("nh07", "plain", "2000", C, "same"),
    ("nh07", "plain", "1000 headers.", W, "2000"),
    ("rr08", "plain", "Exactly once, and it must be the only keyword.", C, "same"),
    ("rr08", "plain", "It can appear several times together with other keywords.", W, "opposite"),
    ("fb01", "plain", "Call InterFace", C, "same"),
    ("fb01", "plain", "Common Interface Format.", W, "not what the text says"),
    ("mp06", "plain", "Exhibit B.", C, "same"),
    ("mp06", "plain", "Exhibit A.", W, "Exhibit A is the source code notice"),
    ("ug05", "plain", "Mailboxes are in /var/mail and are writable by group mail.", C, "same"),
    ("rr04", "plain", "DEB_GAIN_ROOT_CMD", C, "same"),
    ("ug12", "plain", "nobody", C, "same"),
    ("mp09", "plain", "The Contributors bear it.", W, "you do, not any Contributor"),
    ("rr12", "plain", "1.0", C, "same"),

    # ================================================================== held-out: refusals
    ("gp08", "refusal", "The GPL text doesn't set out any fines, so I can't say.", C, "unanswerable; declines"),
    ("gp12", "refusal", "No notice period of that kind appears in the licence.", C, "unanswerable; declines"),
    ("tr08", "refusal", "The triggers specification places no limit on that number, at least none I can find.", C,
     "unanswerable; invents no number"),
    ("md09", "refusal", "I don't have that information.", C, "unanswerable; declines"),
    ("fm07", "refusal", "The Memory Usage page doesn't give any maximum closure size.", C, "unanswerable; declines"),
    ("zl06", "refusal", "The zlib documentation here is silent on threads.", C, "unanswerable; declines"),
    ("cp05", "refusal", "That is not something the child_process documentation covers.", C,
     "unanswerable; declines"),
    ("gp08", "refusal", "Unclear from the sources.", C, "unanswerable; declines"),
    ("md09", "refusal", "No version number is given in the FAQ.", C, "unanswerable; declines"),
    ("gp02", "refusal", "The documents don't tell when GPLv3 was published.", W, "answerable (29 June 2007); refused"),
    ("md04", "refusal", "I can't tell from these passages which translation system man-db uses.", W,
     "answerable (gettext); refused"),
    ("tr01", "refusal", "There's no mention of that in the provided text.", W, "answerable (dpkg-trigger); refused"),
    ("cp02", "refusal", "Not specified in the sources I was given.", W, "answerable (SIGTERM); refused"),
    ("cp01", "refusal", "The passage doesn't spell it out in MiB, but the default maxBuffer is 1024 * 1024 bytes.", C,
     "partial refusal with the right value"),
    ("md02", "refusal", "Not stated precisely; roughly 40 seconds.", C, "hedged, but the right value"),
    ("zl05", "refusal", "I'm not certain, but I believe 64K.", W, "hedged wrong value (32K)"),
    ("fm07", "refusal", "It isn't stated, but closures are limited to 4096 bytes.", W,
     "unanswerable; hedges then invents a limit"),
    ("gp12", "refusal", "There is no explicit period; typically 30 days' notice is given.", W,
     "unanswerable; invents a period"),
    # ------------------------------------------------------------------ held-out: fabrications
    ("gp08", "fabrication", "The FSF can impose fines of up to $10,000 per violation.", W, "unanswerable; invented"),
    ("tr08", "fabrication", "A package may be interested in at most 64 triggers.", W, "unanswerable; invented"),
    ("md09", "fabrication", "The latest man-db version is 2.11.2.", W, "unanswerable; not in the FAQ"),
    ("fm07", "fabrication", "Closures are limited to one page, 4 KiB.", W, "unanswerable; invented"),
    ("zl06", "fabrication", "zlib uses 4 threads by default.", W, "unanswerable; invented"),
    ("cp05", "fabrication", "Node.js allows up to 1024 child processes at once.", W, "unanswerable; invented"),
    ("gp12", "fabrication", "The licensor must give 90 days' notice.", W, "unanswerable; invented"),
    ("zl06", "fabrication", "It runs compression on the libuv threadpool.", W,
     "unanswerable; an answer the documents do not give"),
    # ------------------------------------------------------------------ held-out: near-miss identifiers
    ("tr01", "near-miss", "dpkg-triggers", W, "the program is dpkg-trigger"),
    ("tr09", "near-miss", "It goes to config-files.", W, "config-failed, not config-files"),
    ("md06", "near-miss", "libpipe", W, "libpipeline"),
    ("fm01", "near-miss", "LIBFFI_TMP", W, "LIBFFI_TMPDIR"),
    ("fm01", "near-miss", "TMPDIR", W, "TMPDIR is tried second; LIBFFI_TMPDIR first"),
    ("fm02", "near-miss", "ffi_closure_free", W, "that frees; ffi_closure_alloc allocates"),
    ("fm06", "near-miss", "/usr/tmp", W, "/var/tmp"),
    ("cp03", "near-miss", "/bin/bash", W, "/bin/sh"),
    ("cp03", "near-miss", "/usr/bin/sh", W, "different path component: /bin/sh"),
    ("gp03", "near-miss", "The Free Software Foundation Europe.", W, "a different organisation"),
    ("gp11", "near-miss", "The Free Software Conservancy.", W, "different organisation, same first word"),
    ("bs01", "near-miss", "The Regents of the University of Michigan.", W, "a different university"),
    ("cp02", "near-miss", "SIGKILL", W, "SIGTERM"),
    ("cp02", "near-miss", "'SIGTERM'", C, "exact, in quotes"),
    ("md04", "near-miss", "GNU gettext.", C, "gettext"),
    ("tr01", "near-miss", "`dpkg-trigger`", C, "exact"),
    ("fm06", "near-miss", "/var/tmp", C, "exact"),
    ("md06", "near-miss", "It uses the libpipeline library.", C, "exact"),
    # ------------------------------------------------------------------ held-out: wrong unit
    ("zl01", "wrong-unit", "16 * 1024 kilobytes.", W, "bytes, not kilobytes"),
    ("zl01", "wrong-unit", "16384 kilobytes.", W, "bytes, not kilobytes"),
    ("cp01", "wrong-unit", "1024 * 1024 kilobytes (1 GB).", W, "bytes, not kilobytes"),
    ("md02", "wrong-unit", "Around 40 minutes.", W, "seconds, not minutes"),
    ("md03", "wrong-unit", "Five seconds.", W, "minutes, not seconds"),
    ("gp01", "wrong-unit", "At least three months.", W, "years, not months"),
    ("gp05", "wrong-unit", "30 weeks after the notice.", W, "days, not weeks"),
    ("gp04", "wrong-unit", "Prior to 60 hours after the cessation.", W, "days, not hours"),
    ("zl05", "wrong-unit", "32 MB plus a few kilobytes.", W, "32K, not 32 MB"),
    ("zl03", "wrong-unit", "256 MB.", W, "256K, not MB"),
    # ------------------------------------------------------------------ held-out: swapped roles
    ("zl02", "swapped-roles", "windowBits defaults to 8 and memLevel to 15.", W, "swapped"),
    ("zl02", "swapped-roles", "memLevel: 8; windowBits: 15.", C, "each in its role"),
    ("zl02", "swapped-roles", "The default memLevel is 15 and the default windowBits is 8.", W, "swapped"),
    ("gp05", "swapped-roles", "You must cure it within 60 days; the holder must notify you within 30 days.", W,
     "the two periods swapped"),
    ("gp04", "swapped-roles", "Prior to 30 days after the cessation; after a first notice you cure within 60 days.",
     W, "the two periods swapped"),
    ("gp04", "swapped-roles", "The holder has 60 days after the cessation; separately, after a first notice you must "
     "cure within 30 days.", C, "each in its role"),
    ("md02", "swapped-roles", "man-db took five minutes and man took about 40 seconds.", W, "swapped"),
    ("md03", "swapped-roles", "man took five minutes while man-db needed about 40 seconds.", C, "each in its role"),
    ("zl04", "swapped-roles", "windowBits: 7 and memLevel: 14.", W, "swapped"),
    ("zl04", "swapped-roles", "Set memLevel to 7 and windowBits to 14.", C, "each in its role"),
    ("tr06", "swapped-roles", "No - triggers-pending packages don't satisfy Depends, while triggers-awaited ones do.",
     W, "the two states swapped"),
    ("tr03", "swapped-roles", "Between installed and config-failed.", C, "same pair, order aside"),
    # ------------------------------------------------------------------ held-out: unit conversion
    ("gp01", "unit-conversion", "36 months.", C, "three years"),
    ("gp01", "unit-conversion", "At least 1095 days.", C, "three years in days"),
    ("zl01", "unit-conversion", "16 KiB.", C, "16 * 1024 bytes"),
    ("zl01", "unit-conversion", "16384 bytes.", C, "16 * 1024"),
    ("cp01", "unit-conversion", "1 MiB.", C, "1024 * 1024 bytes"),
    ("cp01", "unit-conversion", "1,048,576 bytes.", C, "1024 * 1024"),
    ("md02", "unit-conversion", "About 40 s.", C, "same"),
    ("md03", "unit-conversion", "300 seconds.", C, "five minutes"),
    ("zl05", "unit-conversion", "32 KiB and a few kilobytes more.", C, "32K"),
    ("zl03", "unit-conversion", "262144 bytes plus a few kilobytes.", C, "256K"),
    ("md01", "unit-conversion", "At least 3x faster.", C, "three times"),
    # ------------------------------------------------------------------ held-out: incidental numbers
    ("gp01", "incidental", "Under section 6b, the offer must be valid for at least three years.", C,
     "section number is not a claim"),
    ("gp05", "incidental", "Section 8 says you must cure it within 30 days of receiving the notice.", C,
     "section number is not a claim"),
    ("gp02", "incidental", "GPL version 3 was published on 29 June 2007.", C, "3 comes from the question"),
    ("gp09", "incidental", "Version 3 of the GNU Affero GPL (section 13 allows the combination).", C,
     "13 is a section number"),
    ("zl02", "incidental", "windowBits 15 and memLevel 8 (windowBits can range from 8 to 15).", C,
     "the range is an aside"),
    ("md07", "incidental", "Ten full releases since the start of 2008 (as of February 2012).", C,
     "years are dates, not counts"),
    ("md01", "incidental", "man-db is at least 3 times as fast for man -K; on the test system it took about 40 "
     "seconds against five minutes.", C, "the timings support the claim"),
    ("cp04", "incidental", "The default timeout is 0, meaning no timeout; maxBuffer is 1024 * 1024 by default.", C,
     "maxBuffer is another option"),
    ("tr04", "incidental", "It runs `postinst triggered` with the trigger names as the 2nd argument.", C,
     "2nd = second"),
    ("fm04", "incidental", "PowerPC; the only affected type is long double (see section 2.7).", C,
     "section number"),
    ("bs02", "incidental", "Three conditions (numbered 1 to 3).", C, "numbering is an aside"),
    ("zl04", "incidental", "Set windowBits to 14 and memLevel to 7, which halves memory from 256K to 128K.", C,
     "256K and 128K come from the question"),
    # ------------------------------------------------------------------ held-out: contrasts
    ("gp05", "contrast", "Not 60 but 30 days after receiving the notice.", C, "60 is the contrast"),
    ("gp04", "contrast", "60 days after the cessation, rather than the 30 days that apply to curing after a first "
     "notice.", C, "30 is the contrast"),
    ("zl01", "contrast", "16 * 1024 bytes; a larger value such as 64 * 1024 can be passed to make fewer calls.", C,
     "64 * 1024 is an example"),
    ("cp01", "contrast", "1024 * 1024 bytes, not 200 * 1024 as in older Node versions.", C, "contrast"),
    ("md02", "contrast", "About 40 seconds, compared with five minutes for man.", C, "man's time is the contrast"),
    ("cp03", "contrast", "/bin/sh, not /bin/bash.", C, "contrast"),
    ("cp02", "contrast", "SIGTERM rather than SIGKILL.", C, "contrast"),
    ("tr09", "contrast", "config-failed, not triggers-pending.", C, "contrast"),
    ("gp01", "contrast", "At least three years, not one year.", C, "contrast"),
    ("gp05", "contrast", "Not 30 but 60 days.", W, "asserts 60"),
    ("zl01", "contrast", "Not 16 * 1024 but 64 * 1024 bytes.", W, "asserts 64 * 1024"),
    # ------------------------------------------------------------------ held-out: scoped negation
    ("gp06", "scoped-negation", "No. Termination of your rights doesn't terminate the licenses of those who got "
     "copies from you.", C, "same claim"),
    ("gp06", "scoped-negation", "Yes, their licenses end along with yours.", W, "opposite"),
    ("tr05", "scoped-negation", "No, they do not satisfy Depends.", C, "same"),
    ("tr05", "scoped-negation", "Yes, triggers-awaited packages satisfy Depends like installed ones.", W, "opposite"),
    ("tr06", "scoped-negation", "Yes. Unlike triggers-awaited packages, which do not satisfy Depends, "
     "triggers-pending ones do.", C, "the negation is about the other state"),
    ("fm03", "scoped-negation", "No - it is not completely thread-safe, though many parts are.", C, "same"),
    ("fm03", "scoped-negation", "Yes, libffi is fully thread-safe.", W, "opposite"),
    ("fm05", "scoped-negation", "No, bit fields in structures are not supported.", C, "same"),
    ("fm05", "scoped-negation", "Yes, bit fields are supported in structures.", W, "opposite"),
    ("cc02", "scoped-negation", "No, it is not a law firm and does not provide legal services.", C, "same"),
    ("cc02", "scoped-negation", "Yes, Creative Commons is a law firm.", W, "opposite"),
    ("pf03", "scoped-negation", "Yes; unlike Essential packages, they can't be left implicit.", C, "same"),
    ("gp07", "scoped-negation", "No, only occasionally and noncommercially.", C, "same"),
    ("gp07", "scoped-negation", "Yes, it may be done commercially without restriction.", W, "opposite"),
    ("bs03", "scoped-negation", "No, not without specific prior written permission.", C, "same"),
    ("bs03", "scoped-negation", "Yes, the University's name may be used freely to endorse derived products.", W,
     "opposite"),
    ("gp03", "scoped-negation", "Only the Free Software Foundation; nobody else may publish revised versions.", C,
     "'nobody else' affirms"),
    # ------------------------------------------------------------------ held-out: question echo
    ("tr01", "question-echo", "Explicit dpkg triggers are activated by a program.", W, "echo; no program named"),
    ("md06", "question-echo", "man-db uses a library for safe command execution.", W, "echo"),
    ("md04", "question-echo", "man-db uses a translation system for its messages.", W, "echo"),
    ("fm01", "question-echo", "An environment variable names the first directory libffi tries for closure files.", W,
     "echo"),
    ("gp10", "question-echo", "You may charge for the physical medium of the Corresponding Source.", W,
     "echo; no limit stated"),
    ("cc01", "question-echo", "The person who associates CC0 with a Work.", W, "echo"),
    ("tr07", "question-echo", "A trigger name may contain characters.", W, "echo"),
    ("pf02", "question-echo", "The field that only apt supports.", W, "echo"),
    ("cp02", "question-echo", "child_process.exec has a default killSignal.", W, "echo"),
    ("bs01", "question-echo", "The copyright in the BSD licence text is held by its copyright holder.", W, "echo"),
    ("tr01", "question-echo", "Explicit triggers are activated by running dpkg-trigger.", C, "echo plus the answer"),
    # ------------------------------------------------------------------ held-out: citations
    ("gp05", "citation", "30 days [1].", C, "[1] is section 8",
     [("GPL-3.txt", "However, if you cease all violation", 800), ("GPL-3.txt", "b) Convey the object code", 700)],
     "correct"),
    ("gp05", "citation", "30 days [2].", C, "[2] is the written offer, three years",
     [("GPL-3.txt", "However, if you cease all violation", 800), ("GPL-3.txt", "b) Convey the object code", 700)],
     "wrong"),
    ("gp05", "citation", "60 days [1].", W, "[1] gives 60 days to the holder, not to cure",
     [("GPL-3.txt", "However, if you cease all violation", 800), ("GPL-3.txt", "b) Convey the object code", 700)],
     "wrong"),
    ("gp05", "citation", "30 days [3].", C, "only two sources",
     [("GPL-3.txt", "However, if you cease all violation", 800), ("GPL-3.txt", "b) Convey the object code", 700)],
     "wrong"),
    ("md02", "citation", "Around 40 seconds [1].", C, "[1] says so",
     [("man-db-FAQ.txt", "Happily, dealing with manual pages", 800)], "correct"),
    ("md02", "citation", "Around 40 seconds [2].", C, "only one source",
     [("man-db-FAQ.txt", "Happily, dealing with manual pages", 800)], "wrong"),
    ("md02", "citation", "About 4 minutes [1].", W, "[1] says 40 seconds",
     [("man-db-FAQ.txt", "Happily, dealing with manual pages", 800)], "wrong"),
    ("zl01", "citation", "16 KiB [2].", C, "[2] says chunkSize defaults to 16K",
     [("zlib.md", "* `flush` {integer} **Default:** `zlib.constants.Z_NO_FLUSH`", 500),
      ("zlib.md", "This is in addition to a single internal output slab", 300)], "correct"),
    ("zl01", "citation", "16384 bytes [1].", C, "[1] says 16 * 1024",
     [("zlib.md", "* `flush` {integer} **Default:** `zlib.constants.Z_NO_FLUSH`", 500),
      ("zlib.md", "This is in addition to a single internal output slab", 300)], "correct"),
    ("zl01", "citation", "64 KiB [1].", W, "[1] says 16 * 1024",
     [("zlib.md", "* `flush` {integer} **Default:** `zlib.constants.Z_NO_FLUSH`", 500),
      ("zlib.md", "This is in addition to a single internal output slab", 300)], "wrong"),
    ("cp02", "citation", "SIGTERM [1]", C, "[1] lists the exec options",
     [("child_process.md", "* `command` {string} The command to run, with space-separated", 1000)], "correct"),
    ("cp02", "citation", "SIGKILL [1]", W, "[1] says SIGTERM",
     [("child_process.md", "* `command` {string} The command to run, with space-separated", 1000)], "wrong"),
    ("tr09", "citation", "config-failed [1]", C, "[1] says so",
     [("triggers.txt", "If the “postinst triggered” run fails", 300), ("triggers.txt", "Concepts", 500)],
     "correct"),
    ("tr09", "citation", "config-failed [2]", C, "[2] is the concepts section",
     [("triggers.txt", "If the “postinst triggered” run fails", 300), ("triggers.txt", "Concepts", 500)],
     "wrong"),
    ("fm03", "citation", "No, not completely, though many parts are [1].", C, "[1] says so",
     [("Thread-Safety.html", "2.7 Thread Safety", 600)], "correct"),
    ("gp06", "citation", "No [1].", C, "[1] says termination does not terminate others' licenses",
     [("GPL-3.txt", "Termination of your rights under this section", 500)], "correct"),
    ("gp06", "citation", "No, their licenses continue [2].", C, "[2] is about the written offer",
     [("GPL-3.txt", "Termination of your rights under this section", 500),
      ("GPL-3.txt", "b) Convey the object code", 600)], "wrong"),
    ("md06", "citation", "libpipeline", C, "no citation", [("man-db-FAQ.txt", "Security and code quality", 700)],
     "none"),
    # ------------------------------------------------------------------ held-out: plain
    ("gp02", "plain", "29 June 2007.", C, "same"),
    ("gp02", "plain", "29 June 2009.", W, "wrong year"),
    ("gp03", "plain", "The Free Software Foundation.", C, "same"),
    ("tr02", "plain", "triggers-pending and triggers-awaited", C, "same"),
    ("tr02", "plain", "triggers-pending and triggers-failed", W, "no triggers-failed"),
    ("tr07", "plain", "Printing 7-bit ASCII characters only, no whitespace.", C, "same"),
    ("tr07", "plain", "Any UTF-8 characters, spaces included.", W, "opposite"),
    ("pf01", "plain", "It is a draft and experimental.", C, "same"),
    ("pf01", "plain", "It is a stable recommendation.", W, "that is the rootless-builds spec"),
    ("md05", "plain", "catgets", C, "same"),
    ("md08", "plain", "February 2012", C, "same"),
    ("md08", "plain", "March 2012", W, "wrong month"),
    ("zl03", "plain", "256K plus a few kilobytes.", C, "same"),
    ("bs02", "plain", "Three.", C, "same"),
    ("bs02", "plain", "Four.", W, "three"),
    ("cc01", "plain", "The Affirmer.", C, "same"),
    ("gp10", "plain", "No more than your reasonable cost of physically performing the conveying.", C, "same"),
    ("gp10", "plain", "Whatever price you choose, including a reasonable profit.", W, "capped at cost"),
    ("fm02", "plain", "ffi_closure_alloc", C, "same"),
    ("md07", "plain", "Ten.", C, "same"),
    ("md07", "plain", "Twelve.", W, "ten"),
    ("tr04", "plain", "postinst triggered, followed by the space-separated trigger names.", C, "same"),
    ("pf02", "plain", "Important", C, "same"),
    ("fm04", "plain", "x86-64", W, "PowerPC"),
    ("cp04", "plain", "0", C, "same"),
]

# Questions that are not in the local run's set (asked only of hand answers)
EXTRA_QUESTIONS = {
    "ap13": {"question": "Which text file's attribution notices must Derivative Works include a readable copy of?",
             "reference": "The NOTICE file.", "answerable": True, "source": "Apache-2.0.txt", "part": "tune"},
}

DOCUMENT_FILES = {
    "Apache-2.0.txt": "/usr/share/common-licenses/Apache-2.0", "MPL-2.0.txt": "/usr/share/common-licenses/MPL-2.0",
    "GPL-3.txt": "/usr/share/common-licenses/GPL-3", "rootless-builds.txt": "/usr/share/doc/dpkg/spec/rootless-builds.txt",
    "triggers.txt": "/usr/share/doc/dpkg/spec/triggers.txt",
    "users-and-groups.html": "/usr/share/doc/base-passwd/users-and-groups.html",
    "man-db-FAQ.txt": "/usr/share/doc/man-db/FAQ", "The-Basics.html": "/usr/share/doc/libffi8/html/The-Basics.html",
    "Thread-Safety.html": "/usr/share/doc/libffi8/html/Thread-Safety.html", "http.md": "/usr/share/doc/nodejs/api/http.md",
    "zlib.md": "/usr/share/doc/nodejs/api/zlib.md", "child_process.md": "/usr/share/doc/nodejs/api/child_process.md",
}


def _text(doc: str) -> str:
    from lib.documents import load_path

    return load_path(DOCUMENT_FILES[doc], name=doc).text


def passage(doc: str, start: str, size: int) -> str:
    """A real passage of `doc`: `size` characters from the first place `start` occurs, cut at a word."""
    text = _text(doc)
    i = text.find(start)
    if i < 0:
        raise ValueError(f"{start!r} is not in {doc}")
    piece = text[i:i + size]
    cut = piece.rfind(" ") if i + size < len(text) else len(piece)
    return re.sub(r"[ \t]+", " ", piece[:cut if cut > size // 2 else len(piece)]).strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", type=Path, help="the local arms' answers, labelled by hand")
    ap.add_argument("--out", type=Path, default=HERE / "answers.jsonl")
    args = ap.parse_args()
    questions = {q["id"]: q for q in map(json.loads, (HERE / "questions.jsonl").read_text().splitlines())}
    questions.update({k: {"id": k, **v} for k, v in EXTRA_QUESTIONS.items()})
    rows = []
    for n, item in enumerate(HAND, 1):
        qid, cls, answer, correct, why = item[:5]
        q = questions[qid]
        sources = [passage(*s) for s in item[5]] if len(item) > 5 else None
        row = {"id": f"h{n:03d}-{qid}", "part": q["part"], "class": cls, "document": q["source"], "origin": "hand",
               "question": q["question"], "reference": q["reference"], "answerable": q["answerable"],
               "answer": answer, "label": {"correct": correct}, "why": why}
        if sources is not None:
            row["sources"] = sources
            row["label"]["citations"] = item[6]
        rows.append(row)
    if args.local:
        local = [json.loads(line) for line in args.local.read_text().splitlines() if line.strip()]
    else:  # keep the labelled local answers already in the set (their labels live only there)
        local = [r for r in map(json.loads, args.out.read_text().splitlines()) if r["origin"].startswith("local:")] \
            if args.out.exists() else []
    rows += local
    with args.out.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} labelled answers to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
