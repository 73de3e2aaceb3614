"""The paper's comparison as a workflow: a grid of runs over seeds, and Table 1 from run folders.

    cells.py    the grid: cells (backbone x conv type x ablation options) x seeds -> train commands
    runner.py   runs a grid on this machine, N at a time, skipping finished runs, resuming cut ones
    runs.py     reading a run folder (config.json, metrics.jsonl), checked, and the epoch it reports
    paper.py    the CoConv paper's figures (Tables 1, 5 and 6)
    table.py    runs grouped by cell: mean and std over seeds, params and MACs
    render.py   the table as Markdown or CSV
"""
