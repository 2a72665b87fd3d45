"""Small Sphinx fixes for the book's site, loaded through `local_extensions` in _config.yml.

- Pages must log no console errors (tests/site checks this):
  * sphinx-thebe's configuration script ends up twice in every page under Jupyter Book 1,
    and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared";
    identical scripts are therefore kept once per page;
  * pydata-sphinx-theme logs "Got invalid theme mode" when no default mode is set, so
    `html_context: {default_mode: light}` is set in _config.yml (readers can still switch).
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        # the same inline script comes once with filename None and once with ""
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
