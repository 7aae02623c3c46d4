"""paralab_fewshot: Few-shot learning: episodes, ProtoNets, MAML, learn2learn interop.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
