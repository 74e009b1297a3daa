"""zolab: ablation plans for zeroth-order (MeZO) fine-tuning, executed, measured and compared.

Layers (dependencies point one way): ``zolab.ui`` -> ``zolab.platform`` -> ``zolab.db``;
``zolab.platform`` -> ``zolab.runners`` (through :class:`zolab.runners.config.RunConfig` and the
:class:`zolab.runners.reporter.Reporter` protocol). ``zolab.runners`` imports only torch,
transformers and peft, so it runs on lean GPU images.
"""

__version__ = "0.1.0"
