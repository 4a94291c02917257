"""A local page to try every task of a bank on your own photo.

  python experiments/demo.py --base_ckpt=runs/quickstart/bank_piggyback [--port=7860] \
      [--host=127.0.0.1]

Upload a photo or pick a sample; every task the bank holds runs on it (each with a switch),
shown side by side with its inference time: a segmentation as a coloured overlay with a legend,
a classification as its top-5, colorization and style as pictures.

Why a small Flask page and not Gradio (the field's usual demo tool): Gradio pulls in some forty
packages (FastAPI, pandas, huggingface-hub, ...) beside a pinned JAX stack, phones home for
analytics and fonts unless told not to, and hides its upload handling in a JavaScript
front end; here a bad upload must become a message on the page, which a plain HTML form and
our own checks (piggyjax/serve.py) make easy to test in a headless browser. Flask is small,
maintained, and its Jinja templates escape every name we print.
"""
import base64
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs import experiments.*

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from piggyjax import cli, serve  # noqa: E402
from piggyjax.bank import BankError  # noqa: E402

config_flags.DEFINE_config_file("config", str(Path(__file__).parent / "configs" / "quickstart.py"),
                                "Config whose task definitions the bank uses.", lock_config=False)
flags.DEFINE_string("base_ckpt", None, "The bank to serve.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (local only by default).")
flags.DEFINE_integer("port", 7860, "Port; 0 picks a free one (printed on start).")
FLAGS = flags.FLAGS
MAX_UPLOAD_BYTES = 25 * 2**20
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")  # photos scikit-image ships

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>piggyjax: {{ bank }}</title>
<style>body{font-family:sans-serif;margin:1.5em}.results{display:flex;flex-wrap:wrap;gap:1em}
.result{border:1px solid #ccc;padding:.6em;width:220px}.result img{width:220px}
.error{background:#fdd;padding:.6em}.note{background:#ffd;padding:.4em}
.swatch{display:inline-block;width:1em;height:1em;margin-right:.3em;vertical-align:middle}
.legend{list-style:none;padding:0;font-size:90%}</style></head><body>
<h1>piggyjax: one backbone, {{ tasks|length }} tasks</h1><p>Bank <code>{{ bank }}</code></p>
<form method="post" action="/run" enctype="multipart/form-data">
 <p><label>Your photo <input type="file" name="photo" id="photo" accept="image/*"></label>
 or a sample <select name="sample" id="sample"><option value="">(none)</option>
 {% for s in samples %}<option{{ ' selected' if s == sample }}>{{ s }}</option>
 {% endfor %}</select></p>
 <p>{% for t in tasks %}<label><input type="checkbox" name="task" value="{{ t }}"
  id="toggle-{{ t }}"{{ ' checked' if t in chosen }}> {{ t }}</label> {% endfor %}</p>
 <button type="submit" id="run">Run</button></form>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}
<div class="results">
{% if photo %}<div class="result"><h3>input</h3><img src="{{ photo }}" alt="input"></div>{% endif %}
{% for r in results %}<div class="result" data-task="{{ r.task }}"><h3>{{ r.task }}
 <small>({{ r.kind }})</small></h3>{% if r.top5 %}<ol class="top5">{% for n, p in r.top5 %}
 <li>{{ n }}: {{ '%.1f' % (100 * p) }} %</li>{% endfor %}</ol>{% else %}
 <img src="{{ r.src }}" alt="{{ r.task }}">{% endif %}
 {% if r.legend %}<ul class="legend">{% for n, c in r.legend %}<li><span class="swatch"
  style="background:rgb{{ c }}"></span>{{ n }}</li>{% endfor %}</ul>{% endif %}
 <p class="time">{{ '%.1f' % r.ms }} ms{{ ' (incl. compilation)' if r.compiled }}</p></div>
{% endfor %}</div></body></html>"""


def png_uri(array) -> str:
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def sample_bytes(name: str) -> bytes:
  import skimage.data
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(getattr(skimage.data, name)()).save(buf, format="PNG")
  return buf.getvalue()


def make_app(runner: serve.Runner):
  import flask
  web = flask.Flask(__name__)
  web.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES

  def page(status=200, **kw):
    args = dict(bank=runner.bank.root.name, tasks=runner.tasks, samples=SAMPLES, sample="",
                chosen=runner.tasks, error=None, notes=[], results=[], photo=None)
    return flask.render_template_string(PAGE, **{**args, **kw}), status

  @web.get("/")
  def index():
    return page()

  @web.post("/run")
  def run():
    form, upload = flask.request.form, flask.request.files.get("photo")
    chosen = [t for t in form.getlist("task") if t in runner.tasks]
    sample = form.get("sample", "") if form.get("sample") in SAMPLES else ""
    state = dict(chosen=chosen, sample=sample)
    try:
      data = upload.read() if upload and upload.filename else b""
      image, notes, results = runner.handle(data or (sample_bytes(sample) if sample else b""),
                                            chosen)
    except serve.UploadError as err:
      return page(400, error=str(err), **state)
    except serve.Busy as err:
      return page(503, error=f"busy: {err}", **state)
    for r in results:
      r.src = png_uri(r.picture)
    if not chosen:
      notes.append("no task is switched on: tick at least one")
    return page(notes=notes, results=results, photo=png_uri(image), **state)

  @web.errorhandler(413)
  def too_large(_):
    return page(413, error=f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MB; send a smaller "
                "photo")

  @web.errorhandler(500)
  def failed(err):  # the page stays up; the log has the details
    logging.error("request failed: %s", getattr(err, "original_exception", err))
    return page(500, error="the server could not process this request; see its log")
  return web


def main(argv):
  del argv
  from werkzeug.serving import make_server
  cli.configure_logging()
  try:
    cli.define_tasks(FLAGS.config)
    if not FLAGS.base_ckpt:
      raise cli.UsageError("--base_ckpt is required: the bank to serve")
    runner = serve.Runner(FLAGS.base_ckpt, FLAGS.config)
  except (cli.UsageError, BankError) as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
  server = make_server(FLAGS.host, FLAGS.port, make_app(runner), threaded=True)
  print(f"serving {len(runner.tasks)} tasks on http://{FLAGS.host}:{server.server_port}/",
        flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass


if __name__ == "__main__":
  app.run(main)
