"""Paper outputs: Tables 1-5, the replication report (LaTeX/Markdown, forest plot), Figures 1, 3c, 4 and 5.

Tables and figures are built from run outputs only (`metrics.json`, dvclive logs, saved maps);
Figure 1 (`pdd explain`) runs Grad-CAM on the frozen teachers.
"""
