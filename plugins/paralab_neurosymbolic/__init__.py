"""paralab_neurosymbolic: Neurosymbolic reasoning: differentiable logic over neural predicates, knowledge graphs.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
