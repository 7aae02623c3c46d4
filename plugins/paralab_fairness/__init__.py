"""paralab_fairness: Fairness auditing: audits of any run, fairlearn parity, mitigation.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
