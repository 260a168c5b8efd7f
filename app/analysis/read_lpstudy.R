# Read an lpstudy data package in R with the types its data_dictionary.csv declares (written by `lpstudy package`).
#
#   source("analysis/read_lpstudy.R")      # from the package's folder
#   pkg <- read_lpstudy(".")               # a list: pkg$trials, pkg$participants, pkg$stimuli
#
# integer -> integer, number -> numeric, string -> character, boolean (0/1) -> logical, datetime (ISO 8601, UTC)
# -> POSIXct in UTC; every empty cell is NA, in text columns too. Base R only.
#
# Why not plain read.csv(file)? It reads every row and value, but it guesses each column's type from its values:
# an empty cell is NA in a number column and "" in a text column, a column with no value at all (rt_ms without
# JavaScript, finished_at before anyone finished) comes back as logical, times stay text, and the 0/1 columns are
# integers. read_lpstudy() gives the same table every time, whatever the data.

read_lpstudy <- function(folder = ".") {
  dict <- read.csv(file.path(folder, "data_dictionary.csv"), colClasses = "character", na.strings = character(0))
  as_r <- c(integer = "integer", number = "numeric", string = "character", boolean = "integer",
            datetime = "character")
  unknown <- setdiff(unique(dict$type), names(as_r))
  if (length(unknown)) stop("data_dictionary.csv: unknown type(s) ", paste(unknown, collapse = ", "))
  files <- list.files(file.path(folder, "data"), pattern = "_data[.]csv$", full.names = TRUE)
  out <- list()
  for (table in unique(dict$table)) {
    f <- files[grepl(paste0("_table-", table, "_data[.]csv$"), basename(files))]
    if (length(f) != 1) stop("no data file for table ", table, " under ", file.path(folder, "data"))
    d <- dict[dict$table == table, ]
    header <- names(read.csv(f, nrows = 0, check.names = FALSE))
    if (!identical(header, d$column)) {
      stop(basename(f), ": columns differ from data_dictionary.csv (", paste(setdiff(union(header, d$column),
           intersect(header, d$column)), collapse = ", "), ")")
    }
    x <- read.csv(f, colClasses = unname(as_r[d$type]), na.strings = "", check.names = FALSE,
                  stringsAsFactors = FALSE, encoding = "UTF-8")
    for (col in d$column[d$type == "boolean"]) x[[col]] <- as.logical(x[[col]])
    for (col in d$column[d$type == "datetime"]) {
      x[[col]] <- as.POSIXct(x[[col]], format = "%Y-%m-%dT%H:%M:%OSZ", tz = "UTC")
    }
    out[[table]] <- x
  }
  out
}
