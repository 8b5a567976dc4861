"""How a data set's rows become the training, validation and test splits, as methods of
`DataModule` (split by seed, fewer training examples, labels spread over tasks or hidden).

They act on (rows, targets) pairs where "rows" are row numbers of the source: the module
splits numbers, not pixels, and reads the rows afterwards (in memory), or when a minibatch
needs them (`data.in_memory=false`). Splitting numbers and splitting the rows themselves
draw the same partitions (scikit-learn's splitters look only at the count and the labels).
"""

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

UNLABELED = -1  # the class of a training example whose label is hidden (semi-supervised)


class Splitting:
    """The split steps of `DataModule.prepare`; the attributes are the DataModule's."""

    task: str
    seed: int
    test_fraction: float
    val_fraction: float
    folds: int | None
    fold: int
    train_size: int | None
    labels_per_example: int | None
    task_columns: list[int]
    labeled_fraction: float | None
    keep_unlabeled: bool

    def _split(
        self, x: np.ndarray, y: np.ndarray, official_test: bool = False
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Test and validation splits as fractions of the whole set; with the publisher's
        own test set (`official_test`), only validation, as a fraction of the training set.
        With `folds`, validation is fold `fold` of the non-test rows instead (`_fold_split`)."""
        parts = {}
        rest = (x, y)
        test_fraction = 0 if official_test else self.test_fraction
        val_fraction = 0 if self.folds else self.val_fraction
        for name, fraction in (("test", test_fraction), ("val", val_fraction)):
            if fraction <= 0:
                continue
            # fractions are of the whole set, not of what the previous split left
            size = round(fraction * len(x))
            stratify = rest[1] if self.task == "classification" else None
            try:
                x_rest, x_part, y_rest, y_part = train_test_split(
                    *rest, test_size=size, random_state=self.seed, stratify=stratify
                )
            except ValueError as err:  # a stratified split smaller than the classes
                raise ValueError(
                    f"data.{name}_fraction={fraction} gives {size} of {len(rest[1])} examples:"
                    f" {err} (allowed: a larger fraction)"
                ) from err
            parts[name] = (x_part, y_part)
            rest = (x_rest, y_rest)
        if self.folds:
            rest, parts["val"] = self._fold_split(*rest)
        parts["train"] = rest
        return parts

    def _fold_split(self, x: np.ndarray, y: np.ndarray) -> tuple[tuple, tuple]:
        """(the other folds, fold `fold`) of k-fold cross-validation over the non-test rows:
        scikit-learn's KFold (StratifiedKFold for classification), shuffled with the seed,
        so GridSearchCV given the same splitter sees the same folds."""
        kind = StratifiedKFold if self.task == "classification" else KFold
        splitter = kind(n_splits=self.folds, shuffle=True, random_state=self.seed)
        try:
            train, val = list(splitter.split(x, y if kind is StratifiedKFold else None))[self.fold]
        except ValueError as err:  # more folds than rows, or than a class has examples
            raise ValueError(
                f"data.folds={self.folds} cannot split {len(y)} examples: {err}"
                " (allowed: fewer folds)"
            ) from err
        return (x[train], y[train]), (x[val], y[val])

    def _subsample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`train_size` examples of the training split (stratified, a function of the seed)."""
        if self.train_size > len(x):
            raise ValueError(
                f"data.train_size={self.train_size} is more than the {len(x)} training examples"
                f" (allowed: 1 … {len(x)})"
            )
        if self.train_size == len(x):
            return x, y
        stratify = y if self.task == "classification" else None
        x, _, y, _ = train_test_split(
            x, y, train_size=self.train_size, random_state=self.seed, stratify=stratify
        )
        return x, y

    def _spread_labels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Multi-task data where tasks are labelled on different examples: training example
        i keeps the targets of `labels_per_example` tasks (in turn over a seeded shuffle, so
        every task gets the same share), the others become NaN (missing)."""
        tasks = y.shape[1]
        order = np.random.default_rng([self.seed, tasks]).permutation(len(y))
        spread = np.full(y.shape, np.nan)
        for j in range(min(self.labels_per_example, tasks)):
            column = (order + j) % tasks
            spread[np.arange(len(y)), column] = y[np.arange(len(y)), column]
        return x, spread

    def _select_tasks(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The columns of `use_tasks`, and the examples with a target for one of them (all
        tasks are split and spread first, so a single-task run sees exactly the examples
        that task has in the multi-task run)."""
        y = y[:, self.task_columns].astype(np.float64)
        labeled = ~np.isnan(y).all(axis=1)
        return x[labeled], y[labeled]

    def _hide_labels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep the labels of `labeled_fraction` of the training examples (stratified when
        possible, a function of the seed); the others become UNLABELED, or are dropped."""
        n = len(y)
        count = max(1, round(self.labeled_fraction * n))
        self.n_labeled = count
        if count >= n:
            return x, y
        rows = np.arange(n)
        try:
            stratify = y if self.task == "classification" else None
            labeled = train_test_split(
                rows, train_size=count, random_state=self.seed, stratify=stratify
            )[0]
        except ValueError:  # fewer labelled examples than classes: a plain random draw
            labeled = train_test_split(rows, train_size=count, random_state=self.seed)[0]
        labeled = np.sort(labeled)
        if not self.keep_unlabeled:
            return x[labeled], y[labeled]
        hidden = np.full_like(y, UNLABELED)
        hidden[labeled] = y[labeled]
        return x, hidden
