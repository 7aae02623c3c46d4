"""paralab_explain: Explainable AI: attributions as an auditor of any run, with SHAP, LIME and Captum.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
